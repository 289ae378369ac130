-- Placeholder: migration 6 belongs to branch schema14 of this session. It is
-- here only so that this branch's migrations stay contiguous (schema.Migrations
-- refuses a gap); the merge keeps schema14's 0006 and deletes this file.
SELECT 1;
