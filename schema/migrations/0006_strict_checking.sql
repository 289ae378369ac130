-- strict_checking (Bucardo's sync and table option). true (the default): a
-- column that a source has and a target lacks fails the run. false: that
-- column is left out of the copy to that target, and the run reports it.
-- A table's NULL follows its sync.
ALTER TABLE gobucardo.sync ADD COLUMN strict_checking boolean NOT NULL DEFAULT true;
ALTER TABLE gobucardo.relation ADD COLUMN strict_checking boolean;
