package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/knadh/koanf/maps"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// LoadOptions are Load's inputs. Everything comes in as a parameter so tests
// (and cmd) control every layer.
type LoadOptions struct {
	// Env is the --env flag; empty falls back to DEPLOYMENT_ENV, then the
	// file's "env" key, then development.
	Env string
	// File is the --config file (YAML); empty for none.
	File string
	// Environ is the process environment as from os.Environ(). nil reads
	// os.Environ(); pass an empty, non-nil slice for no variables.
	Environ []string
	// Flags is the command's flag set; only flags the user set override.
	Flags *pflag.FlagSet
	// FlagMap maps flag names to keys ("nats-url" → "nats.url"). A flag whose
	// name is itself a key ("scorer.batch_size") needs no entry; other flags
	// (--config, --env, a command's own flags) are not configuration.
	FlagMap map[string]string
}

// EnvDeployment is the deployment guide's variable that chooses the environment.
const EnvDeployment = "DEPLOYMENT_ENV"

// EnvPrefix starts the variable of every key: CARDIOSTREAM_SECTION__KEY.
const EnvPrefix = "CARDIOSTREAM_"

// guideVars are the deployment guide's variables and the keys they set.
var guideVars = map[string]string{
	"API_KEY":              "security.api_key",
	"MONITORING_KEY":       "security.monitoring_key",
	"MODEL_PATH":           "model.path",
	"ALERT_WEBHOOK":        "webhook.url",
	"ALERT_WEBHOOK_SECRET": "webhook.secret",
}

// GuideVariables returns the deployment guide's variables (other than
// DEPLOYMENT_ENV) and the keys they set.
func GuideVariables() map[string]string {
	out := make(map[string]string, len(guideVars))
	for k, v := range guideVars {
		out[k] = v
	}
	return out
}

// EnvVar returns the CARDIOSTREAM_ variable that sets key
// ("scorer.batch_size" → "CARDIOSTREAM_SCORER__BATCH_SIZE").
func EnvVar(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

const sourceDefault = "default"

// Load reads the configuration from its layers (see the package doc). It
// reports every problem it finds as Problems (one line each); it does not
// Validate.
func Load(opts LoadOptions) (*Config, error) {
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ()
	}
	vars := map[string]string{}
	for _, kv := range environ {
		if name, val, ok := strings.Cut(kv, "="); ok {
			vars[name] = val
		}
	}

	var file *userFile
	if opts.File != "" {
		f, err := readUserFile(opts.File)
		if err != nil {
			return nil, err
		}
		file = f
	}

	envName, err := chooseEnv(opts.Env, vars[EnvDeployment], file)
	if err != nil {
		return nil, err
	}

	l := &loader{k: koanf.New("."), sources: map[string]string{}}

	// 1. Built-in defaults.
	def := Default()
	def.Env = envName
	l.merge(plain(reflect.ValueOf(def)).(map[string]any), func(string) string { return sourceDefault })

	// 2. The chosen environment's section of the embedded environments.yml.
	sections, err := parseSections(environmentsYAML, "environments.yml")
	if err != nil {
		return nil, err // a broken embedded file is a build defect; tests catch it
	}
	envSrc := fmt.Sprintf("environments.yml (%s)", envName)
	l.merge(sections[envName], func(string) string { return envSrc })

	// 3. The user file.
	if file != nil {
		layer, src := file.layer(envName, &l.ps)
		l.merge(layer, func(string) string { return src })
	}

	// 4. Environment variables.
	l.mergeEnv(environ)

	// 5. Flags the user set.
	if opts.Flags != nil {
		l.mergeFlags(opts.Flags, opts.FlagMap)
	}

	// Every value from outside must convert to its key's type.
	for _, key := range sortedKeys(l.sources) {
		t, ok := configSchema.leaves[key]
		if !ok {
			continue
		}
		v := l.k.Get(key)
		if err := decodeLeaf(t, v); err != nil {
			msg := fmt.Sprintf("cannot use %s (from %s): %s", describe(key, v), l.sources[key], cleanDecodeError(err))
			if isSecretKey(key) {
				msg = fmt.Sprintf("cannot use the value from %s as %s", l.sources[key], t)
			}
			l.ps.add(ErrBadValue, key, msg)
		}
	}
	if err := l.ps.err(); err != nil {
		return nil, err
	}

	var cfg Config
	if err := l.k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: decoderConfig(nil)}); err != nil {
		return nil, Problems{{Message: "decoding configuration: " + cleanDecodeError(err), kind: ErrBadValue}}
	}
	cfg.Env = envName
	cfg.sources = map[string]string{}
	for k, s := range l.sources {
		if s != sourceDefault {
			cfg.sources[k] = s
		}
	}
	return &cfg, nil
}

// loader is the state of one Load: its koanf instance, where each key's
// value came from, and the problems found so far.
type loader struct {
	k       *koanf.Koanf
	sources map[string]string
	ps      problems
}

// merge checks a layer's keys against the schema and merges the good ones.
// sourceOf names the origin of each key's value for messages and Sources.
func (l *loader) merge(layer map[string]any, sourceOf func(key string) string) {
	if len(layer) == 0 {
		return
	}
	flat, _ := maps.Flatten(pruneNil(layer), nil, ".")
	good := make(map[string]any, len(flat))
	for key, v := range flat {
		if msg, kind := configSchema.check(key, v); kind != nil {
			l.ps.add(kind, key, fmt.Sprintf("%s (from %s)", msg, sourceOf(key)))
			continue
		}
		if m, isMap := v.(map[string]any); isMap && len(m) == 0 {
			continue // an empty section sets nothing
		}
		good[key] = v
		l.sources[key] = sourceOf(key)
	}
	if len(good) == 0 {
		return
	}
	// confmap cannot fail on a map; the error is part of the Provider interface.
	_ = l.k.Load(confmap.Provider(good, "."), nil)
}

// mergeEnv merges the deployment guide's variables and CARDIOSTREAM_ ones.
func (l *loader) mergeEnv(environ []string) {
	type setting struct{ name, value string }
	byKey := map[string][]setting{}
	p := env.Provider(".", env.Opt{
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key := l.envKey(name)
			if key == "" || value == "" {
				return "", nil
			}
			byKey[key] = append(byKey[key], setting{name, value})
			return key, value
		},
	})
	m, err := p.Read()
	if err != nil { // cannot happen with an EnvironFunc; kept for the interface
		l.ps.add(ErrBadValue, "", "reading environment variables: "+err.Error())
		return
	}
	flat, _ := maps.Flatten(m, nil, ".")
	for key, set := range byKey {
		for _, s := range set[1:] {
			if s.value != set[0].value {
				l.ps.add(ErrConflict, key, fmt.Sprintf("set by both %s and %s with different values; unset one", set[0].name, s.name))
				delete(flat, key)
				break
			}
		}
	}
	l.merge(maps.Unflatten(flat, "."), func(key string) string {
		names := make([]string, 0, len(byKey[key]))
		for _, s := range byKey[key] {
			names = append(names, s.name)
		}
		sort.Strings(names)
		return "env " + strings.Join(names, ", ")
	})
}

// envKey maps a variable name to its key, or "" for variables that are not
// configuration. Likely mistakes become problems rather than being ignored.
func (l *loader) envKey(name string) string {
	if key, ok := guideVars[name]; ok {
		return key
	}
	rest, ok := strings.CutPrefix(name, EnvPrefix)
	if !ok {
		return ""
	}
	lower := strings.ToLower(rest)
	if strings.Contains(rest, "__") {
		key := strings.ReplaceAll(lower, "__", ".")
		if key == "env" || strings.HasPrefix(key, "env.") {
			l.ps.add(ErrUnknownKey, "env", fmt.Sprintf("%s is not read: the environment is chosen by --env or %s", name, EnvDeployment))
			return ""
		}
		return key
	}
	if lower == "env" {
		l.ps.add(ErrUnknownKey, "env", fmt.Sprintf("%s is not read: the environment is chosen by --env or %s", name, EnvDeployment))
		return ""
	}
	// CARDIOSTREAM_SCORER_BATCH_SIZE: a single underscore after a section
	// name is almost certainly a misspelt CARDIOSTREAM_SCORER__BATCH_SIZE.
	for section := range configSchema.sections {
		if !strings.Contains(section, ".") && strings.HasPrefix(lower, section+"_") {
			l.ps.add(ErrUnknownKey, section, fmt.Sprintf("%s is not read: nesting needs a double underscore (%s%s__%s)",
				name, EnvPrefix, strings.ToUpper(section), strings.ToUpper(strings.TrimPrefix(lower, section+"_"))))
			return ""
		}
	}
	return "" // CARDIOSTREAM_ variables without "__" belong to tools and tests
}

// mergeFlags merges the flags the user set.
func (l *loader) mergeFlags(fs *pflag.FlagSet, flagMap map[string]string) {
	for _, name := range sortedKeys(flagMap) {
		key := flagMap[name]
		if _, ok := configSchema.leaves[key]; !ok || key == "env" {
			l.ps.add(ErrUnknownKey, key, fmt.Sprintf("flag --%s maps to a key that is not a settable configuration value", name))
		}
	}
	flagOf := map[string]string{}
	p := posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
		key, ok := flagMap[f.Name]
		if !ok {
			if _, isKey := configSchema.leaves[f.Name]; isKey {
				key = f.Name
			}
		}
		if key == "" || key == "env" || !f.Changed {
			return "", nil
		}
		flagOf[key] = "flag --" + f.Name
		return key, posflag.FlagVal(fs, f)
	})
	m, err := p.Read()
	if err != nil { // posflag's Read does not fail; kept for the interface
		l.ps.add(ErrBadValue, "", "reading flags: "+err.Error())
		return
	}
	l.merge(m, func(key string) string { return flagOf[key] })
}

// userFile is a parsed --config file.
type userFile struct {
	path      string
	data      map[string]any
	sectioned bool   // top-level keys are environment names
	env       string // a plain file's "env" key
}

func readUserFile(path string) (*userFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	data, err := yaml.Parser().Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("parsing config file %s: %w", path, err)
	}
	f := &userFile{path: path, data: data}
	var envKeys, plainKeys []string
	for k := range data {
		if slices.Contains(Environments(), k) {
			envKeys = append(envKeys, k)
		} else {
			plainKeys = append(plainKeys, k)
		}
	}
	sort.Strings(envKeys)
	sort.Strings(plainKeys)
	switch {
	case len(envKeys) > 0 && len(plainKeys) > 0:
		return nil, Problems{{Key: plainKeys[0], kind: ErrConflict, Message: fmt.Sprintf(
			"config file %s mixes environment sections (%s) with plain keys (%s): use one shape",
			path, strings.Join(envKeys, ", "), strings.Join(plainKeys, ", "))}}
	case len(envKeys) > 0:
		f.sectioned = true
	default:
		if v, ok := data["env"]; ok && v != nil {
			s, isString := v.(string)
			if !isString {
				return nil, Problems{{Key: "env", kind: ErrBadValue, Message: fmt.Sprintf("in %s must be one of %s", path, strings.Join(Environments(), ", "))}}
			}
			f.env = strings.ToLower(strings.TrimSpace(s))
		}
	}
	return f, nil
}

// layer returns the part of the file that applies to env, and its source name.
func (f *userFile) layer(envName string, ps *problems) (map[string]any, string) {
	if !f.sectioned {
		layer := make(map[string]any, len(f.data))
		for k, v := range f.data {
			if k != "env" {
				layer[k] = v
			}
		}
		return layer, "file " + f.path
	}
	src := fmt.Sprintf("file %s (%s section)", f.path, envName)
	section, ok := f.data[envName]
	if !ok {
		var have []string
		for k := range f.data {
			have = append(have, k)
		}
		sort.Strings(have)
		ps.add(ErrConflict, "env", fmt.Sprintf("config file %s has no section for environment %q (it has: %s)", f.path, envName, strings.Join(have, ", ")))
		return nil, src
	}
	m, ok := section.(map[string]any)
	if !ok && section != nil {
		ps.add(ErrBadValue, envName, fmt.Sprintf("in %s must be a mapping of keys", f.path))
		return nil, src
	}
	if _, hasEnv := m["env"]; hasEnv {
		ps.add(ErrUnknownKey, "env", fmt.Sprintf("cannot be set inside the %s section of %s", envName, f.path))
		m = withoutKey(m, "env")
	}
	return m, src
}

// parseSections parses an environments file: top-level keys are the
// environment names, each a mapping of configuration keys.
func parseSections(b []byte, name string) (map[string]map[string]any, error) {
	data, err := yaml.Parser().Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	out := map[string]map[string]any{}
	for k, v := range data {
		if !slices.Contains(Environments(), k) {
			return nil, fmt.Errorf("%s: %q is not an environment (%s)", name, k, strings.Join(Environments(), ", "))
		}
		m, ok := v.(map[string]any)
		if !ok && v != nil {
			return nil, fmt.Errorf("%s: section %s is not a mapping", name, k)
		}
		if _, hasEnv := m["env"]; hasEnv {
			return nil, fmt.Errorf("%s: section %s sets env", name, k)
		}
		out[k] = m
	}
	return out, nil
}

// chooseEnv picks the environment: --env, else DEPLOYMENT_ENV, else the
// file's env key, else development. A file made for another environment is
// an error, whichever way the environment was chosen.
func chooseEnv(flagEnv, deployEnv string, file *userFile) (string, error) {
	norm := func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
	env, from := Development, "the default"
	fileEnv := ""
	if file != nil {
		fileEnv = file.env
	}
	switch {
	case norm(flagEnv) != "":
		env, from = norm(flagEnv), "--env"
	case norm(deployEnv) != "":
		env, from = norm(deployEnv), EnvDeployment
	case fileEnv != "":
		env, from = fileEnv, "env in "+file.path
	}
	valid := Environments()
	if fileEnv != "" && !slices.Contains(valid, fileEnv) {
		return "", Problems{{Key: "env", kind: ErrUnknownEnvironment, Message: fmt.Sprintf(
			"%q (from env in %s) is not an environment; valid environments are %s", fileEnv, file.path, strings.Join(valid, ", "))}}
	}
	if !slices.Contains(valid, env) {
		return "", Problems{{Key: "env", kind: ErrUnknownEnvironment, Message: fmt.Sprintf(
			"%q (from %s) is not an environment; valid environments are %s", env, from, strings.Join(valid, ", "))}}
	}
	if fileEnv != "" && fileEnv != env {
		return "", Problems{{Key: "env", kind: ErrConflict, Message: fmt.Sprintf(
			"config file %s is for environment %q but %s selects %q", file.path, fileEnv, from, env)}}
	}
	return env, nil
}

// pruneNil drops null values (an empty YAML key) so they cannot wipe a
// default, recursively through nested mappings.
func pruneNil(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case nil:
		case map[string]any:
			out[k] = pruneNil(x)
		default:
			out[k] = v
		}
	}
	return out
}

func withoutKey(m map[string]any, key string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
