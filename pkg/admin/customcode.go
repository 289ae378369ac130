package admin

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pluginhost"
	"github.com/gobucardo/gobucardo/pkg/replicate"
)

func addCustomCode(e *env) error {
	kv, err := parseKVExtra(e.c.Args().Slice(), customCodeKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 {
		return usagef("usage: mcp add customcode NAME plugin=PATH whenrun=HOOK (sync=S | table=SCHEMA.T) [priority=N] [timeout=DURATION] [SETTING=VALUE ...]")
	}
	cc, at, err := newCustomCode(kv.pos[0], kv, catalog.PluginChecksum)
	if err != nil {
		return err
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		var relID int64
		if at.onSync {
			if _, err := catalog.GetSync(ctx, tx, at.sync); err != nil {
				return err
			}
		} else {
			r, err := catalog.LookupRelation(ctx, tx, catalog.KindTable, at.db, at.table)
			if err != nil {
				return err
			}
			relID = r.ID
		}
		if err := checkPlugin(e, cc); err != nil {
			return err
		}
		if err := catalog.AddCustomCode(ctx, tx, cc); err != nil {
			return err
		}
		if err := catalog.AttachCustomCode(ctx, tx, cc.Name, at.sync, relID); err != nil {
			return err
		}
		e.printf("Added customcode %q (%s, sha256 %s) at %s of %s\n", cc.Name, cc.Plugin, cc.SHA256[:12], cc.WhenRun, at.where())
		return nil
	})
}

// checkPlugin starts the plugin of cc, checks that it has the handler its
// whenrun needs and that it takes cc's settings, and stops it: a plugin that
// cannot run is refused when it is registered, not at its first run.
func checkPlugin(e *env, cc catalog.CustomCode) error {
	wait := cc.Timeout
	if wait <= 0 {
		wait = catalog.DefaultPluginTimeout
	}
	ctx, cancel := context.WithTimeout(e.ctx(), pluginhost.StartTimeout+wait)
	defer cancel()
	code := replicate.CustomCode{Name: cc.Name, Plugin: cc.Plugin, SHA256: cc.SHA256, WhenRun: cc.WhenRun, Settings: cc.Settings,
		Timeout: cc.Timeout}
	// go-plugin's own warnings (a plugin killed after a refusal) are noise here.
	client, pc, err := pluginhost.Start(ctx, e.log.WithOptions(zap.IncreaseLevel(zap.ErrorLevel)), code)
	if err != nil {
		return catalog.Invalidf("%v", err)
	}
	defer pc.Kill()
	conflict, exception, hook := client.Capabilities()
	has := map[string]bool{"conflict": conflict, "exception": exception}
	what := map[string]string{"conflict": "conflict handler", "exception": "exception handler"}
	ok, known := has[cc.WhenRun]
	if !known {
		ok, what[cc.WhenRun] = hook, "run hook"
	}
	if !ok {
		var hs []string
		for _, h := range []struct {
			on   bool
			name string
		}{{conflict, "conflict"}, {exception, "exception"}, {hook, "before_sync, after_sync, before_txn, after_txn"}} {
			if h.on {
				hs = append(hs, h.name)
			}
		}
		return catalog.Invalidf("customcode %s: plugin %s has no %s, so it cannot run at whenrun=%s: use whenrun=%s",
			cc.Name, cc.Plugin, what[cc.WhenRun], cc.WhenRun, strings.Join(hs, " or "))
	}
	return nil
}

func updateCustomCode(e *env) error {
	kv, err := parseKVExtra(e.c.Args().Slice(), customCodeUpdateKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 || len(kv.vals)+len(kv.extra) == 0 {
		return usagef("usage: mcp update customcode NAME key=value ... (a plugin's own SETTING=VALUE, or SETTING= to remove it)")
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		cc, err := catalog.GetCustomCode(ctx, tx, kv.pos[0])
		if err != nil {
			return err
		}
		if err := applyCustomCode(&cc, kv, catalog.PluginChecksum); err != nil {
			return err
		}
		if err := checkPlugin(e, cc); err != nil {
			return err
		}
		if err := catalog.UpdateCustomCode(ctx, tx, cc); err != nil {
			return err
		}
		e.printf("Changed customcode %q (%s, sha256 %s, %s, priority %d, %s)\n", cc.Name, cc.Plugin, cc.SHA256[:12],
			cc.WhenRun, cc.Priority, cc.Status)
		return nil
	})
}
