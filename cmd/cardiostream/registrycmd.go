package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osuser "os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardiostream/cardiostream/config"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/schemas"
)

// registryFlags maps the registry commands' flags to configuration keys.
var registryFlags = map[string]string{"nats-url": "nats.url"}

// regSession is one connected registry command.
type regSession struct {
	r      *registry.Registry
	cfg    *config.Config
	actor  string
	asJSON bool
	out    io.Writer
}

// registryCmds returns the lifecycle commands registered under `model`.
func (c *cli) registryCmds() []*cobra.Command {
	push := c.regCmd(&cobra.Command{
		Use:   "push FILE|DIR --version V [--notes TEXT] [--sign-key FILE]",
		Short: "Store a model artifact in the registry under a version",
		Long: `push stores the artifact (the directory with manifest.json, the model file and
golden.csv, or the manifest itself) in the CARDIO_MODELS object store and records
its sha256, sizes, features and the manifest's metrics in CARDIO_MODEL_REGISTRY.
A version is pushed once: the same artifact again changes nothing; a different
artifact under an existing version is refused. --version must equal the
manifest's version (default: the manifest's). --sign-key signs the artifact with
an ed25519 private key (PEM PKCS #8 or base64 seed); pushing the same artifact
again with --sign-key adds a signature to an unsigned version.`,
		Args: cobra.ExactArgs(1),
	}, func(ctx context.Context, s *regSession, cmd *cobra.Command, args []string) error {
		a, err := registry.ReadArtifact(args[0])
		if err != nil {
			return err
		}
		version, _ := cmd.Flags().GetString("version")
		if version == "" {
			var m struct{ Version string }
			_ = json.Unmarshal(a.Manifest, &m)
			version = m.Version
		}
		notes, _ := cmd.Flags().GetString("notes")
		opts := registry.PushOptions{Version: version, Notes: notes, Actor: s.actor}
		if keyFile, _ := cmd.Flags().GetString("sign-key"); keyFile != "" {
			if opts.SignKey, err = registry.ReadPrivateKey(keyFile); err != nil {
				return err
			}
		}
		res, err := s.r.Push(ctx, a, opts)
		if err != nil {
			return err
		}
		if s.asJSON {
			return s.json(res)
		}
		md := res.Metadata
		switch {
		case res.Created:
			fmt.Fprintf(s.out, "pushed %s %s: sha256 %s, %d bytes, %d files%s\n", md.Name, md.Version, md.SHA256, md.Size, len(md.Files), signedWord(md.Signed))
		case res.Signed:
			fmt.Fprintf(s.out, "%s already stored with the same artifact; signature added\n", md.Version)
		default:
			fmt.Fprintf(s.out, "%s already stored with the same artifact (sha256 %s); nothing changed\n", md.Version, md.SHA256)
		}
		return nil
	})
	push.Flags().String("version", "", "version to store the artifact under (must equal the manifest's; default: the manifest's)")
	push.Flags().String("notes", "", "free text recorded with the version and in the audit trail")
	push.Flags().String("sign-key", "", "ed25519 private key file to sign the artifact with (never logged)")

	list := c.regCmd(&cobra.Command{
		Use:   "list",
		Short: "List the registry's versions and which is active and shadow",
		Args:  cobra.NoArgs,
	}, func(ctx context.Context, s *regSession, _ *cobra.Command, _ []string) error {
		vs, err := s.r.List(ctx)
		if err != nil {
			return err
		}
		if s.asJSON {
			if vs == nil {
				vs = []registry.VersionInfo{}
			}
			return s.json(vs)
		}
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tSTATUS\tNAME\tSHA256\tACCURACY\tAUC\tBRIER\tSIGNED\tPUSHED BY\tPUSHED AT\tNOTES")
		for _, v := range vs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.4f\t%.4f\t%.4f\t%s\t%s\t%s\t%s\n", v.Version, status(v), v.Name, short(v.SHA256),
				v.Metrics.HeldoutAccuracy, v.Metrics.HeldoutAUC, v.Metrics.HeldoutBrier, yesNo(v.Signed), v.PushedBy,
				v.PushedAt.Format(time.RFC3339), v.Notes)
		}
		return tw.Flush()
	})

	show := c.regCmd(&cobra.Command{
		Use:   "show VERSION",
		Short: "Show one version: metadata, pointer status and its validation gates",
		Args:  cobra.ExactArgs(1),
	}, func(ctx context.Context, s *regSession, _ *cobra.Command, args []string) error {
		vi, err := s.r.Show(ctx, args[0])
		if err != nil {
			return err
		}
		gates, gerr := s.r.Validate(ctx, args[0])
		if s.asJSON {
			out := struct {
				*registry.VersionInfo
				Gates     *registry.GateReport `json:"gates,omitempty"`
				GateError string               `json:"gate_error,omitempty"`
			}{VersionInfo: vi, Gates: gates}
			if gerr != nil {
				out.GateError = gerr.Error()
			}
			return s.json(out)
		}
		fmt.Fprintf(s.out, "version:   %s (%s)\nname:      %s\nsha256:    %s (%d bytes)\nfeatures:  %s\nthreshold: %g\nheld-out:  accuracy %.4f, AUC %.4f, Brier %.4f (manifest, %d rows)\nsigned:    %s\npushed:    %s by %s\n",
			vi.Version, status(*vi), vi.Name, vi.SHA256, vi.Size, strings.Join(vi.FeatureNames, ","), vi.Threshold,
			vi.Metrics.HeldoutAccuracy, vi.Metrics.HeldoutAUC, vi.Metrics.HeldoutBrier, vi.Metrics.HeldoutRows,
			yesNo(vi.Signed), vi.PushedAt.Format(time.RFC3339), vi.PushedBy)
		if vi.Notes != "" {
			fmt.Fprintf(s.out, "notes:     %s\n", vi.Notes)
		}
		if gerr != nil {
			fmt.Fprintf(s.out, "gates:     not run: %v\n", gerr)
			return nil
		}
		fmt.Fprintf(s.out, "gates:     %s\n", passWord(gates.OK()))
		for _, c := range gates.Checks {
			fmt.Fprintf(s.out, "  %s\n", c)
		}
		return nil
	})

	history := c.regCmd(&cobra.Command{
		Use:   "history",
		Short: "Show the audit trail: every push, activation, rollback, shadow change and refusal",
		Args:  cobra.NoArgs,
	}, func(ctx context.Context, s *regSession, cmd *cobra.Command, _ []string) error {
		limit, _ := cmd.Flags().GetInt("limit")
		es, err := s.r.History(ctx, limit)
		if err != nil {
			return err
		}
		if s.asJSON {
			if es == nil {
				es = []schemas.AuditEntry{}
			}
			return s.json(es)
		}
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tACTION\tFROM\tTO\tACTOR\tFORCED\tREASON")
		for _, e := range es {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.Action, dash(e.FromVersion), dash(e.ToVersion),
				e.Actor, yesNo(e.Forced), e.Reason)
			for _, d := range e.Details {
				fmt.Fprintf(tw, "\t\t\t\t\t\t  %s\n", d)
			}
		}
		return tw.Flush()
	})
	history.Flags().Int("limit", 0, "show only the last N entries (0 = all)")

	change := func(ctx context.Context, s *regSession, cmd *cobra.Command, do func(registry.ChangeOptions) (*registry.ChangeResult, error)) error {
		reason, _ := cmd.Flags().GetString("reason")
		force, _ := cmd.Flags().GetBool("force")
		res, err := do(registry.ChangeOptions{Actor: s.actor, Reason: reason, Force: force})
		if err != nil {
			return err
		}
		if s.asJSON {
			return s.json(res)
		}
		if res.Gates != nil {
			for _, c := range res.Gates.Checks {
				fmt.Fprintf(s.out, "  %s\n", c)
			}
		}
		switch {
		case res.Unchanged && res.Action == schemas.AuditShadowOff:
			fmt.Fprintln(s.out, "no shadow version is set; nothing changed")
		case res.Unchanged:
			fmt.Fprintf(s.out, "%s is already %s; nothing changed\n", res.To, res.Key)
		case res.Action == schemas.AuditShadowOff:
			fmt.Fprintf(s.out, "shadow: %s -> none\n", res.From)
		default:
			fmt.Fprintf(s.out, "%s: %s -> %s%s\n", res.Key, dash(res.From), res.To, forcedWord(res.Forced))
		}
		if res.ShadowCleared {
			fmt.Fprintf(s.out, "shadow: %s -> none (promoted to active)\n", res.To)
		}
		return nil
	}
	changeFlags := func(cmd *cobra.Command, withForce bool) {
		cmd.Flags().String("reason", "", "why (recorded in the pointer and the audit trail)")
		if withForce {
			cmd.Flags().Bool("force", false, "bypass failed quality gates (recorded; refused in production; never bypasses integrity)")
		}
	}

	activate := c.regCmd(&cobra.Command{
		Use:   "activate VERSION [--reason TEXT] [--force]",
		Short: "Deploy a version: scorers switch to it between batches",
		Long: `activate runs the validation gates (loads with the scorer's loader, feature names
and order, golden predictions within 1e-6, accuracy/AUC/Brier floors on the bundled
held-out set) and, when they pass, points "active" at the version. A refusal prints
one line per failed check and is recorded in the audit trail.`,
		Args: cobra.ExactArgs(1),
	}, func(ctx context.Context, s *regSession, cmd *cobra.Command, args []string) error {
		return change(ctx, s, cmd, func(o registry.ChangeOptions) (*registry.ChangeResult, error) { return s.r.Activate(ctx, args[0], o) })
	})
	changeFlags(activate, true)

	rollback := c.regCmd(&cobra.Command{
		Use:   "rollback [--to VERSION] [--reason TEXT]",
		Short: "Return to the previously active version (or --to VERSION)",
		Args:  cobra.NoArgs,
	}, func(ctx context.Context, s *regSession, cmd *cobra.Command, _ []string) error {
		to, _ := cmd.Flags().GetString("to")
		return change(ctx, s, cmd, func(o registry.ChangeOptions) (*registry.ChangeResult, error) { return s.r.Rollback(ctx, to, o) })
	})
	changeFlags(rollback, true)
	rollback.Flags().String("to", "", "version to roll back to (default: the one active before the current)")

	shadow := c.regCmd(&cobra.Command{
		Use:   "shadow VERSION | --off",
		Short: "Score every record with a challenger version too (or stop with --off)",
		Long: `shadow points "shadow" at a version that passed the gates: scorers then also score
every record with it and publish to cardio.predictions.shadow.<source>, never to
the main predictions subject. --off removes the shadow.`,
		Args: cobra.MaximumNArgs(1),
	}, func(ctx context.Context, s *regSession, cmd *cobra.Command, args []string) error {
		off, _ := cmd.Flags().GetBool("off")
		switch {
		case off && len(args) == 0:
			return change(ctx, s, cmd, func(o registry.ChangeOptions) (*registry.ChangeResult, error) { return s.r.ShadowOff(ctx, o) })
		case !off && len(args) == 1:
			return change(ctx, s, cmd, func(o registry.ChangeOptions) (*registry.ChangeResult, error) { return s.r.SetShadow(ctx, args[0], o) })
		}
		return usageError{errors.New("model shadow takes a VERSION or --off")}
	})
	changeFlags(shadow, true)
	shadow.Flags().Bool("off", false, "remove the shadow version")

	return []*cobra.Command{push, list, show, history, activate, rollback, shadow}
}

// regCmd adds the connection flags to cmd and runs fn with a connected
// registry.
func (c *cli) regCmd(cmd *cobra.Command, fn func(ctx context.Context, s *regSession, cmd *cobra.Command, args []string) error) *cobra.Command {
	cmd.Flags().String("nats-url", "", "NATS server URL(s), comma-separated (default "+defaultClientURL+", a running standalone; env CARDIOSTREAM_NATS__URL)")
	cmd.Flags().Bool("json", false, "print JSON instead of a table")
	cmd.Flags().String("actor", "", "who is acting, for the audit trail (default $USER@hostname)")
	cmd.Flags().Duration("timeout", 30*time.Second, "give up when NATS is not reachable or an operation takes longer")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := c.loadConfig(cmd, registryFlags)
		if err != nil {
			return err
		}
		// Only what this command uses is checked: an operator's laptop need
		// not hold the webhook secret to list versions.
		if err := errors.Join(cfg.Streams.Validate(), cfg.RegistryConfig().Validate()); err != nil {
			return fmt.Errorf("invalid configuration (see `cardiostream config validate`):\n%w", err)
		}
		timeout, _ := cmd.Flags().GetDuration("timeout")
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		log := c.newLogger(cfg).With("env", cfg.Env)
		nc, js, err := connectAndSetup(ctx, cfg, clientURL(cfg), "cardiostream-model", log)
		if err != nil {
			return err
		}
		defer drainConn(nc, 10*time.Second, log)
		rcfg := cfg.RegistryConfig()
		rcfg.Timeout = min(rcfg.Timeout, timeout)
		// As in the scorer: on a cluster electing a bucket's leader, opening
		// fails for a moment (the configuration was validated above).
		var r *registry.Registry
		err = retrySetup(ctx, "opening the model registry", log, func(ctx context.Context) (err error) {
			r, err = registry.Open(ctx, js, rcfg, log)
			return err
		})
		if err != nil {
			return err
		}
		asJSON, _ := cmd.Flags().GetBool("json")
		actor, _ := cmd.Flags().GetString("actor")
		if actor == "" {
			actor = c.defaultActor()
		}
		return fn(ctx, &regSession{r: r, cfg: cfg, actor: actor, asJSON: asJSON, out: c.stdout}, cmd, args)
	}
	return cmd
}

// defaultActor is $USER@hostname ($LOGNAME, then the OS account, when USER
// is unset).
func (c *cli) defaultActor() string {
	user := ""
	for _, name := range []string{"USER=", "LOGNAME="} {
		for _, kv := range c.environ {
			if v, ok := strings.CutPrefix(kv, name); ok && v != "" && user == "" {
				user = v
			}
		}
	}
	if user == "" {
		if u, err := osuser.Current(); err == nil && u.Username != "" {
			user = u.Username
		} else {
			user = "unknown"
		}
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return user + "@" + host
}

func (s *regSession) json(v any) error {
	enc := json.NewEncoder(s.out)
	enc.SetEscapeHTML(false) // gate details hold "<=", for people and jq alike
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func status(v registry.VersionInfo) string {
	switch {
	case v.Active && v.Shadow:
		return "active+shadow"
	case v.Active:
		return "active"
	case v.Shadow:
		return "shadow"
	}
	return "-"
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func signedWord(b bool) string {
	if b {
		return ", signed"
	}
	return ""
}

func forcedWord(b bool) string {
	if b {
		return " (FORCED past failed gates)"
	}
	return ""
}

func passWord(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}
