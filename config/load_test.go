package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// writeFile writes a config file into a temporary directory.
func writeFile(tb testing.TB, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "cardiostream.yml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// testFlags is a flag set like cmd's, parsed from args.
func testFlags(tb testing.TB, args ...string) (*pflag.FlagSet, map[string]string) {
	tb.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.Int("batch-size", 0, "")
	fs.String("nats-url", "", "")
	fs.Duration("ack-wait", 0, "")
	fs.String("api-key", "", "")
	fs.String("log-level", "", "")
	fs.Bool("sync-always", false, "")
	fs.String("scorer.consumer", "", "a flag named by its key needs no FlagMap entry")
	fs.String("replay", "", "a command flag that is not configuration")
	if err := fs.Parse(args); err != nil {
		tb.Fatal(err)
	}
	return fs, map[string]string{
		"batch-size":  "scorer.batch_size",
		"nats-url":    "nats.url",
		"ack-wait":    "scorer.ack_wait",
		"api-key":     "security.api_key",
		"log-level":   "log.level",
		"sync-always": "nats.embedded.sync_always",
	}
}

func mustLoad(tb testing.TB, opts LoadOptions) *Config {
	tb.Helper()
	if opts.Environ == nil {
		opts.Environ = []string{}
	}
	cfg, err := Load(opts)
	if err != nil {
		tb.Fatalf("Load: %v", err)
	}
	return cfg
}

// loadErr loads and returns the error, failing if there is none.
func loadErr(tb testing.TB, opts LoadOptions) error {
	tb.Helper()
	if opts.Environ == nil {
		opts.Environ = []string{}
	}
	_, err := Load(opts)
	if err == nil {
		tb.Fatal("Load succeeded, want an error")
	}
	return err
}

func TestLoadDefaults(t *testing.T) {
	cfg := mustLoad(t, LoadOptions{})
	want := Default()
	// The development section of environments.yml is the only difference.
	want.Log.Level = "info"
	want.sources = map[string]string{}
	cfg.sources = map[string]string{}
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("Load with nothing set:\n got %+v\nwant %+v", *cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the defaults do not validate:\n%v", err)
	}
}

func TestPrecedence(t *testing.T) {
	def := Default().Scorer.BatchSize
	const file = "scorer:\n  batch_size: 100\nlog:\n  level: warn\n"
	envVar := "CARDIOSTREAM_SCORER__BATCH_SIZE=200"
	tests := []struct {
		name       string
		file       bool
		environ    []string
		args       []string
		want       int
		wantSource string
	}{
		{name: "defaults", want: def, wantSource: "default"},
		{name: "file over defaults", file: true, want: 100, wantSource: "file"},
		{name: "env over file", file: true, environ: []string{envVar}, want: 200, wantSource: "env CARDIOSTREAM_SCORER__BATCH_SIZE"},
		{name: "flag over env", file: true, environ: []string{envVar}, args: []string{"--batch-size=300"}, want: 300, wantSource: "flag --batch-size"},
		{name: "flag over defaults", args: []string{"--batch-size", "300"}, want: 300, wantSource: "flag --batch-size"},
		{name: "unset flag does not override", file: true, environ: []string{envVar}, args: []string{"--nats-url=nats://127.0.0.1:4222"}, want: 200, wantSource: "env CARDIOSTREAM_SCORER__BATCH_SIZE"},
		{name: "flag set to its zero value still overrides", file: true, args: []string{"--batch-size=0"}, want: 0, wantSource: "flag --batch-size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, fm := testFlags(t, tt.args...)
			opts := LoadOptions{Environ: append([]string{}, tt.environ...), Flags: fs, FlagMap: fm}
			if tt.file {
				opts.File = writeFile(t, file)
			}
			cfg := mustLoad(t, opts)
			if cfg.Scorer.BatchSize != tt.want {
				t.Errorf("scorer.batch_size = %d, want %d", cfg.Scorer.BatchSize, tt.want)
			}
			if got := cfg.Source("scorer.batch_size"); !strings.HasPrefix(got, tt.wantSource) {
				t.Errorf("Source(scorer.batch_size) = %q, want %q…", got, tt.wantSource)
			}
		})
	}
}

func TestPrecedenceEnvironmentSection(t *testing.T) {
	tests := []struct {
		name       string
		env        string
		file       string
		want       string
		wantSource string
	}{
		{name: "development section over defaults", env: Development, want: "info", wantSource: "environments.yml (development)"},
		{name: "staging section", env: Staging, want: "info", wantSource: "environments.yml (staging)"},
		{name: "file over section", env: Development, file: "log:\n  level: warn\n", want: "warn", wantSource: "file "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{Env: tt.env}
			if tt.file != "" {
				opts.File = writeFile(t, tt.file)
			}
			cfg := mustLoad(t, opts)
			if cfg.Log.Level != tt.want {
				t.Errorf("log.level = %q, want %q", cfg.Log.Level, tt.want)
			}
			if got := cfg.Source("log.level"); !strings.HasPrefix(got, tt.wantSource) {
				t.Errorf("Source(log.level) = %q, want %q…", got, tt.wantSource)
			}
		})
	}
}

func TestEnvironmentSelection(t *testing.T) {
	tests := []struct {
		name     string
		flag     string
		deploy   string
		fileEnv  string
		want     string
		wantErr  error
		wantText []string
	}{
		{name: "default is development", want: Development},
		{name: "DEPLOYMENT_ENV", deploy: "staging", want: Staging},
		{name: "--env beats DEPLOYMENT_ENV", flag: "production", deploy: "staging", want: Production},
		{name: "case and spaces are forgiven", deploy: " Production ", want: Production},
		{name: "file env when nothing else says", fileEnv: "staging", want: Staging},
		{name: "file env agreeing with DEPLOYMENT_ENV", fileEnv: "staging", deploy: "staging", want: Staging},
		{name: "unknown from flag", flag: "prod", wantErr: ErrUnknownEnvironment,
			wantText: []string{`"prod" (from --env)`, "development, staging, production"}},
		{name: "unknown from DEPLOYMENT_ENV", deploy: "qa", wantErr: ErrUnknownEnvironment,
			wantText: []string{`"qa" (from DEPLOYMENT_ENV)`, "development, staging, production"}},
		{name: "unknown in file", fileEnv: "live", wantErr: ErrUnknownEnvironment, wantText: []string{`"live"`}},
		{name: "file for another environment", fileEnv: "production", deploy: "development", wantErr: ErrConflict,
			wantText: []string{`is for environment "production" but DEPLOYMENT_ENV selects "development"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{Env: tt.flag, Environ: []string{}}
			if tt.deploy != "" {
				opts.Environ = []string{"DEPLOYMENT_ENV=" + tt.deploy}
			}
			if tt.fileEnv != "" {
				opts.File = writeFile(t, "env: "+tt.fileEnv+"\n")
			}
			cfg, err := Load(opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				for _, s := range tt.wantText {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Env != tt.want {
				t.Errorf("Env = %q, want %q", cfg.Env, tt.want)
			}
		})
	}
}

func TestGuideVariables(t *testing.T) {
	model := writeFile(t, "not really a model")
	cfg := mustLoad(t, LoadOptions{Environ: []string{
		"PATH=/usr/bin",
		"API_KEY=api-key-value-123456",
		"MONITORING_KEY=monitoring-key-value-123456",
		"MODEL_PATH=" + model,
		"ALERT_WEBHOOK=https://hooks.example.com/alerts",
		"ALERT_WEBHOOK_SECRET=webhook-secret-value",
		"DEPLOYMENT_ENV=staging",
	}})
	got := map[string]string{
		"security.api_key":        cfg.Security.APIKey.Reveal(),
		"security.monitoring_key": cfg.Security.MonitoringKey.Reveal(),
		"model.path":              cfg.Model.Path,
		"webhook.url":             cfg.Webhook.URL,
		"webhook.secret":          cfg.Webhook.Secret.Reveal(),
		"env":                     cfg.Env,
	}
	want := map[string]string{
		"security.api_key":        "api-key-value-123456",
		"security.monitoring_key": "monitoring-key-value-123456",
		"model.path":              model,
		"webhook.url":             "https://hooks.example.com/alerts",
		"webhook.secret":          "webhook-secret-value",
		"env":                     Staging,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guide variables:\n got %v\nwant %v", got, want)
	}
	for name, key := range GuideVariables() {
		if src := cfg.Source(key); src != "env "+name {
			t.Errorf("Source(%s) = %q, want %q", key, src, "env "+name)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestGuideVariableAndPrefixedSpelling(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    string
		wantErr error
	}{
		{name: "same value", environ: []string{"API_KEY=k1", "CARDIOSTREAM_SECURITY__API_KEY=k1"}, want: "k1"},
		{name: "different values", environ: []string{"API_KEY=k1", "CARDIOSTREAM_SECURITY__API_KEY=k2"}, wantErr: ErrConflict},
		{name: "empty value is ignored", environ: []string{"API_KEY=", "CARDIOSTREAM_SECURITY__API_KEY=k2"}, want: "k2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(LoadOptions{Environ: tt.environ})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "k1") || strings.Contains(err.Error(), "k2") {
					t.Errorf("the error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Security.APIKey.Reveal(); got != tt.want {
				t.Errorf("api_key = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnvNesting(t *testing.T) {
	cfg := mustLoad(t, LoadOptions{Environ: []string{
		"CARDIOSTREAM_SCORER__BATCH_SIZE=500",
		"CARDIOSTREAM_NATS__URL=nats://10.0.0.1:4222,nats://10.0.0.2:4222",
		"CARDIOSTREAM_NATS__EMBEDDED__SYNC_ALWAYS=true",
		"CARDIOSTREAM_STREAMS__RECORDS__MAX_AGE=48h",
		"CARDIOSTREAM_WEBHOOK__TIMEOUT=7s",
		"CARDIOSTREAM_NO_PYTHON=1",          // not configuration: no double underscore
		"cardiostream_scorer__batch_size=9", // the prefix is case-sensitive
	}})
	if cfg.Scorer.BatchSize != 500 {
		t.Errorf("scorer.batch_size = %d, want 500", cfg.Scorer.BatchSize)
	}
	if cfg.NATS.URL != "nats://10.0.0.1:4222,nats://10.0.0.2:4222" {
		t.Errorf("nats.url = %q", cfg.NATS.URL)
	}
	if !cfg.NATS.Embedded.SyncAlways {
		t.Error("nats.embedded.sync_always not set")
	}
	if cfg.Streams.Records.MaxAge != 48*time.Hour {
		t.Errorf("streams.records.max_age = %s, want 48h", cfg.Streams.Records.MaxAge)
	}
	if cfg.Webhook.Timeout != 7*time.Second {
		t.Errorf("webhook.timeout = %s, want 7s", cfg.Webhook.Timeout)
	}
	if EnvVar("nats.embedded.sync_always") != "CARDIOSTREAM_NATS__EMBEDDED__SYNC_ALWAYS" {
		t.Errorf("EnvVar = %s", EnvVar("nats.embedded.sync_always"))
	}
}

func TestLoadProblems(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		environ  []string
		args     []string
		wantErr  error
		wantLine string
	}{
		{name: "misspelt variable", environ: []string{"CARDIOSTREAM_SCORER__BATCHSIZE=5"}, wantErr: ErrUnknownKey,
			wantLine: "scorer.batchsize: unknown key; did you mean scorer.batch_size? (from env CARDIOSTREAM_SCORER__BATCHSIZE)"},
		{name: "single underscore", environ: []string{"CARDIOSTREAM_SCORER_BATCH_SIZE=5"}, wantErr: ErrUnknownKey,
			wantLine: "scorer: CARDIOSTREAM_SCORER_BATCH_SIZE is not read: nesting needs a double underscore (CARDIOSTREAM_SCORER__BATCH_SIZE)"},
		{name: "CARDIOSTREAM_ENV", environ: []string{"CARDIOSTREAM_ENV=production"}, wantErr: ErrUnknownKey,
			wantLine: "env: CARDIOSTREAM_ENV is not read: the environment is chosen by --env or DEPLOYMENT_ENV"},
		{name: "misspelt file key", file: "scorer:\n  batch_sise: 5\n", wantErr: ErrUnknownKey,
			wantLine: "scorer.batch_sise: unknown key; did you mean scorer.batch_size?"},
		{name: "key in the wrong section", file: "batch_size: 5\n", wantErr: ErrUnknownKey,
			wantLine: "scorer.batch_size? (from file"},
		{name: "section given a value", file: "scorer: 5\n", wantErr: ErrBadValue,
			wantLine: "scorer: is a section: give it a mapping of keys, not 5"},
		{name: "value given a section", file: "model:\n  path:\n    x: 1\n", wantErr: ErrUnknownKey,
			wantLine: "model.path.x: unknown key"},
		{name: "retired key", file: "monitor:\n  consumer:\n    lanes: 256\n", wantErr: ErrUnknownKey,
			wantLine: "monitor.consumer.lanes: no longer a setting: the monitor joins in memory; there are no lanes of round trips; remove it"},
		{name: "retired section", file: "monitor:\n  ledger:\n    stream: L\n", wantErr: ErrUnknownKey,
			wantLine: "monitor.ledger.stream: no longer a setting: the monitor folds the input streams directly (no ledger stream); remove it"},
		{name: "not a number", environ: []string{"CARDIOSTREAM_SCORER__BATCH_SIZE=lots"}, wantErr: ErrBadValue,
			wantLine: `scorer.batch_size: cannot use "lots" (from env CARDIOSTREAM_SCORER__BATCH_SIZE)`},
		{name: "fraction for an integer", file: "scorer:\n  batch_size: 2.5\n", wantErr: ErrBadValue,
			wantLine: "2.5 is not a whole number"},
		{name: "bare number for a duration", file: "scorer:\n  ack_wait: 30\n", wantErr: ErrBadValue,
			wantLine: `a duration needs a unit, e.g. "30s"`},
		{name: "unitless duration string", environ: []string{"CARDIOSTREAM_SCORER__ACK_WAIT=30"}, wantErr: ErrBadValue,
			wantLine: "missing unit in duration"},
		{name: "not a bool", environ: []string{"CARDIOSTREAM_NATS__EMBEDDED__SYNC_ALWAYS=maybe"}, wantErr: ErrBadValue,
			wantLine: `nats.embedded.sync_always: cannot use "maybe"`},
		{name: "sectioned file without the chosen environment", file: "production:\n  log:\n    format: json\n", wantErr: ErrConflict,
			wantLine: `has no section for environment "development" (it has: production)`},
		{name: "mixed file", file: "production:\n  log:\n    format: json\nscorer:\n  batch_size: 5\n", wantErr: ErrConflict,
			wantLine: "mixes environment sections (production) with plain keys (scorer)"},
		{name: "env inside a section", file: "development:\n  env: production\n", wantErr: ErrUnknownKey,
			wantLine: "env: cannot be set inside the development section"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{Environ: tt.environ}
			if tt.file != "" {
				opts.File = writeFile(t, tt.file)
			}
			if tt.args != nil {
				opts.Flags, opts.FlagMap = testFlags(t, tt.args...)
			}
			err := loadErr(t, opts)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantLine) {
				t.Errorf("error:\n%v\ndoes not contain\n%s", err, tt.wantLine)
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	err := loadErr(t, LoadOptions{
		File:    writeFile(t, "scorer:\n  batch_sise: 5\n  ack_wait: 30\n"),
		Environ: []string{"CARDIOSTREAM_LOG__LEVL=info"},
	})
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err is %T, want Problems", err)
	}
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = p.Key
	}
	want := []string{"log.levl", "scorer.ack_wait", "scorer.batch_sise"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("problem keys = %v, want %v (one line each, sorted)\n%v", keys, want, err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("error has %d lines, want %d", n, len(want))
	}
}

func TestDurationsParse(t *testing.T) {
	fs, fm := testFlags(t, "--ack-wait=45s")
	cfg := mustLoad(t, LoadOptions{
		File:    writeFile(t, "scorer:\n  shutdown_timeout: 30s\nmonitor:\n  window_duration: 1h30m\nnats:\n  connect_timeout: 0\n"),
		Environ: []string{"CARDIOSTREAM_WEBHOOK__MAX_BACKOFF=2m"},
		Flags:   fs, FlagMap: fm,
	})
	tests := []struct {
		key  string
		got  time.Duration
		want time.Duration
	}{
		{"scorer.shutdown_timeout (file)", cfg.Scorer.ShutdownTimeout, 30 * time.Second},
		{"monitor.window_duration (file)", cfg.Monitor.WindowDuration, 90 * time.Minute},
		{"nats.connect_timeout (file, 0 needs no unit)", cfg.NATS.ConnectTimeout, 0},
		{"webhook.max_backoff (env)", cfg.Webhook.MaxBackoff, 2 * time.Minute},
		{"scorer.ack_wait (duration flag)", cfg.Scorer.AckWait, 45 * time.Second},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %s, want %s", tt.key, tt.got, tt.want)
		}
	}
}

func TestFileShapes(t *testing.T) {
	t.Run("plain file with null values keeps the defaults", func(t *testing.T) {
		cfg := mustLoad(t, LoadOptions{File: writeFile(t, "# comments only and empty sections\nscorer:\nmonitor: {}\nmodel:\n  path:\n")})
		want := Default()
		if !reflect.DeepEqual(cfg.Scorer, want.Scorer) || !reflect.DeepEqual(cfg.Monitor, want.Monitor) {
			t.Errorf("an empty section changed the defaults: scorer %+v monitor %+v", cfg.Scorer, cfg.Monitor)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		mustLoad(t, LoadOptions{File: writeFile(t, "")})
	})
	t.Run("sectioned file uses the chosen section", func(t *testing.T) {
		path := writeFile(t, "development:\n  scorer:\n    batch_size: 11\nstaging:\n  scorer:\n    batch_size: 22\n")
		for env, want := range map[string]int{Development: 11, Staging: 22} {
			cfg := mustLoad(t, LoadOptions{File: path, Env: env})
			if cfg.Scorer.BatchSize != want {
				t.Errorf("%s: scorer.batch_size = %d, want %d", env, cfg.Scorer.BatchSize, want)
			}
			if src := cfg.Source("scorer.batch_size"); !strings.Contains(src, "("+env+" section)") {
				t.Errorf("%s: Source = %q", env, src)
			}
		}
	})
	t.Run("environments.yml is a valid --config file", func(t *testing.T) {
		for _, env := range Environments() {
			cfg := mustLoad(t, LoadOptions{File: "environments.yml", Env: env})
			if cfg.Env != env {
				t.Errorf("Env = %q, want %q", cfg.Env, env)
			}
		}
	})
	t.Run("missing file", func(t *testing.T) {
		err := loadErr(t, LoadOptions{File: filepath.Join(t.TempDir(), "nope.yml")})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v, want not-exist", err)
		}
	})
	t.Run("not YAML", func(t *testing.T) {
		err := loadErr(t, LoadOptions{File: writeFile(t, "scorer: [unclosed\n")})
		if !strings.Contains(err.Error(), "parsing config file") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestEmbeddedEnvironments(t *testing.T) {
	sections, err := parseSections(environmentsYAML, "environments.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range Environments() {
		if _, ok := sections[env]; !ok {
			t.Errorf("environments.yml has no %s section", env)
		}
	}
	// The file in the source tree is the embedded one.
	onDisk, err := os.ReadFile("environments.yml")
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != string(EnvironmentsYAML()) {
		t.Error("EnvironmentsYAML differs from environments.yml")
	}
	tests := []struct {
		env        string
		syncAlways bool
		format     string
		level      string
	}{
		{Development, false, "text", "info"},
		{Staging, true, "json", "info"},
		{Production, true, "json", "info"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			cfg := mustLoad(t, LoadOptions{Env: tt.env})
			if cfg.NATS.Embedded.SyncAlways != tt.syncAlways || cfg.Log.Format != tt.format || cfg.Log.Level != tt.level {
				t.Errorf("sync_always=%v format=%s level=%s, want %v %s %s",
					cfg.NATS.Embedded.SyncAlways, cfg.Log.Format, cfg.Log.Level, tt.syncAlways, tt.format, tt.level)
			}
			// Every environment's alert thresholds come from the monitor's defaults.
			if !reflect.DeepEqual(cfg.Monitor, Default().Monitor) {
				t.Errorf("monitor config differs from monitor.DefaultConfig()")
			}
		})
	}
}

func TestSecretsUnmarshal(t *testing.T) {
	fs, fm := testFlags(t, "--api-key=from-flag")
	cfg := mustLoad(t, LoadOptions{
		File:    writeFile(t, "nats:\n  token: from-file\n"),
		Environ: []string{"ALERT_WEBHOOK_SECRET=from-env", "MONITORING_KEY=12345"},
		Flags:   fs, FlagMap: fm,
	})
	got := []string{cfg.NATS.Token.Reveal(), cfg.Webhook.Secret.Reveal(), cfg.Security.APIKey.Reveal(), cfg.Security.MonitoringKey.Reveal()}
	want := []string{"from-file", "from-env", "from-flag", "12345"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("secrets = %v, want %v", got, want)
	}
}

func TestAlertRulesFromFile(t *testing.T) {
	cfg := mustLoad(t, LoadOptions{File: writeFile(t, `
monitor:
  rules:
    - name: accuracy
      metric: accuracy
      comparator: "<"
      threshold: 0.9
      recover_threshold: 0.92
      min_samples: 20
      for: 5m
      severity: critical
`)})
	if len(cfg.Monitor.Rules) != 1 {
		t.Fatalf("rules = %+v, want the file's one rule (a list replaces the default list)", cfg.Monitor.Rules)
	}
	r := cfg.Monitor.Rules[0]
	if r.Threshold != 0.9 || r.RecoverThreshold == nil || *r.RecoverThreshold != 0.92 || r.For != 5*time.Minute || r.MinSamples != 20 {
		t.Errorf("rule = %+v", r)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	for name, rule := range map[string]string{
		"misspelt field":        "treshold: 0.9",
		"duration without unit": "for: 300",
	} {
		t.Run(name, func(t *testing.T) {
			err := loadErr(t, LoadOptions{File: writeFile(t, "monitor:\n  rules:\n    - name: a\n      "+rule+"\n")})
			if !errors.Is(err, ErrBadValue) || !strings.HasPrefix(err.Error(), "monitor.rules: ") {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestFlagMapToUnknownKey(t *testing.T) {
	fs, fm := testFlags(t)
	fm["nats-url"] = "nats.uri"
	err := loadErr(t, LoadOptions{Flags: fs, FlagMap: fm})
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "flag --nats-url maps to") {
		t.Errorf("err = %v", err)
	}
}

func TestFlagNamedByKey(t *testing.T) {
	fs, fm := testFlags(t, "--scorer.consumer=scorer-b", "--replay=x.data")
	cfg := mustLoad(t, LoadOptions{Flags: fs, FlagMap: fm})
	if cfg.Scorer.Consumer != "scorer-b" {
		t.Errorf("scorer.consumer = %q, want scorer-b", cfg.Scorer.Consumer)
	}
}

// FuzzLoadFile: whatever the file holds, Load returns a config or an error,
// and a loaded config can be validated and shown.
func FuzzLoadFile(f *testing.F) {
	f.Add([]byte("scorer:\n  batch_size: 100\n"))
	f.Add([]byte("production:\n  log:\n    format: json\n"))
	f.Add([]byte("env: staging\nnats:\n  url: nats://x:4222\n"))
	f.Add([]byte("monitor:\n  window_size: 2.5\n"))
	f.Add([]byte("scorer: 5\n"))
	f.Add([]byte("1: 2\n? [a]\n: b\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	f.Add(environmentsYAML)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(LoadOptions{File: path, Environ: []string{}})
		if err != nil {
			return
		}
		_ = cfg.Validate()
		if _, err := cfg.RedactedYAML(); err != nil {
			t.Fatalf("RedactedYAML: %v", err)
		}
	})
}
