package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/cardiostream/cardiostream/internal/suggest"
)

const tagName = "koanf"

var (
	durationType        = reflect.TypeFor[time.Duration]()
	timeType            = reflect.TypeFor[time.Time]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// schema is the set of keys Config accepts, derived from its koanf tags.
type schema struct {
	leaves   map[string]reflect.Type // keys that take a value
	sections map[string]bool         // keys that are structs (take a mapping of keys)
	open     map[string]bool         // map-typed keys: any sub-key is accepted
}

var configSchema = newSchema(reflect.TypeFor[Config]())

func newSchema(t reflect.Type) *schema {
	s := &schema{leaves: map[string]reflect.Type{}, sections: map[string]bool{}, open: map[string]bool{}}
	s.walk("", t)
	return s
}

// field is one configuration field of a struct: its key name and whether
// mapstructure squashes it into the parent.
type field struct {
	index  int
	name   string
	squash bool
}

// fields lists t's configuration fields the way mapstructure sees them.
func fields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get(tagName)
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		squash := strings.Contains(opts, "squash") || (f.Anonymous && name == "")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, field{index: i, name: name, squash: squash})
	}
	return out
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// isLeaf reports whether a value of type t is given as one value rather than
// as a mapping of sub-keys.
func isLeaf(t reflect.Type) bool {
	if t == durationType || t == timeType {
		return true
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return true
	}
	return t.Kind() != reflect.Struct && t.Kind() != reflect.Map
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func (s *schema) walk(prefix string, t reflect.Type) {
	for _, f := range fields(t) {
		ft := deref(t.Field(f.index).Type)
		if f.squash && ft.Kind() == reflect.Struct {
			s.walk(prefix, ft)
			continue
		}
		key := join(prefix, f.name)
		switch {
		case isLeaf(ft):
			s.leaves[key] = ft
		case ft.Kind() == reflect.Map:
			s.open[key] = true
		default:
			s.sections[key] = true
			s.walk(key, ft)
		}
	}
}

// check says what is wrong with giving key the value v; "" when nothing.
func (s *schema) check(key string, v any) (msg string, kind error) {
	if _, ok := s.leaves[key]; ok {
		if _, isMap := v.(map[string]any); isMap {
			return "takes a single value, not a mapping of keys", ErrBadValue
		}
		return "", nil
	}
	if s.sections[key] || s.open[key] {
		if _, isMap := v.(map[string]any); !isMap {
			return fmt.Sprintf("is a section: give it a mapping of keys, not %s", describe(key, v)), ErrBadValue
		}
		return "", nil
	}
	for p := range s.open {
		if strings.HasPrefix(key, p+".") {
			return "", nil
		}
	}
	for old, why := range retiredKeys {
		if key == old || strings.HasPrefix(key, old+".") {
			return "no longer a setting: " + why + "; remove it", ErrUnknownKey
		}
	}
	msg = "unknown key"
	if sug := s.suggest(key); sug != "" {
		msg += fmt.Sprintf("; did you mean %s?", sug)
	}
	return msg, ErrUnknownKey
}

// retiredKeys are settings of earlier versions, with why they went: a file
// that still has one gets that reason instead of a bare "unknown key".
var retiredKeys = map[string]string{
	"monitor.ledger":           "the monitor folds the input streams directly (no ledger stream)",
	"monitor.pending_bucket":   "open joins are kept in the monitor's memory and checkpoint (no pending bucket)",
	"monitor.joined_bucket":    "resolved records are kept in the monitor's memory and checkpoint for monitor.joined_ttl (no joined bucket)",
	"monitor.consumer.workers": "the monitor reads each input with one ordered consumer",
	"monitor.consumer.lanes":   "the monitor joins in memory; there are no lanes of round trips",
}

// suggest returns the known key nearest to a misspelt one, or "".
func (s *schema) suggest(key string) string {
	var all []string
	for k := range s.leaves {
		all = append(all, k)
	}
	for k := range s.sections {
		all = append(all, k)
	}
	sort.Strings(all)
	best, bestDist := "", math.MaxInt
	for _, k := range all {
		if d := suggest.Distance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if bestDist <= max(2, len(key)/5) {
		return best
	}
	// The right key in the wrong section ("batch_size" for "scorer.batch_size").
	last := key[strings.LastIndex(key, ".")+1:]
	var same []string
	for _, k := range all {
		if k == last || strings.HasSuffix(k, "."+last) {
			same = append(same, k)
		}
	}
	if len(same) > 0 && len(same) <= 3 {
		return strings.Join(same, " or ")
	}
	return ""
}

// plain turns a value into the maps, slices and scalars koanf holds, keyed
// by koanf tags, so built-in defaults can be the first layer.
func plain(v reflect.Value) any {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	t := v.Type()
	switch {
	case isLeaf(t) && t.Kind() != reflect.Slice && t.Kind() != reflect.Array:
		return v.Interface()
	case t.Kind() == reflect.Struct:
		m := map[string]any{}
		plainStruct(v, m)
		return m
	case t.Kind() == reflect.Map:
		if v.IsNil() {
			return nil
		}
		m := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			m[fmt.Sprint(iter.Key().Interface())] = plain(iter.Value())
		}
		return m
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		if t.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		if t.Elem().Kind() == reflect.Uint8 {
			return v.Interface()
		}
		out := make([]any, v.Len())
		for i := range v.Len() {
			out[i] = plain(v.Index(i))
		}
		return out
	default:
		return v.Interface()
	}
}

func plainStruct(v reflect.Value, m map[string]any) {
	t := v.Type()
	for _, f := range fields(t) {
		fv := v.Field(f.index)
		if f.squash && deref(fv.Type()).Kind() == reflect.Struct {
			for fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					break
				}
				fv = fv.Elem()
			}
			if fv.Kind() == reflect.Struct {
				plainStruct(fv, m)
			}
			continue
		}
		if p := plain(fv); p != nil {
			m[f.name] = p
		}
	}
}

// decoderConfig is how every value is decoded: weakly typed (variables and
// flags are strings), durations and text-unmarshalable types from strings,
// comma-separated lists, and strict about unknown keys and lossy numbers.
func decoderConfig(result any) *mapstructure.DecoderConfig {
	return &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			guardHook,
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
			mapstructure.TextUnmarshallerHookFunc(),
		),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		TagName:          tagName,
		Result:           result,
	}
}

// guardHook refuses conversions weak typing would make silently wrong: a
// bare number as a duration (is "30" seconds or nanoseconds?) and a
// fractional number as an integer.
func guardHook(from, to reflect.Type, data any) (any, error) {
	if from == nil || to == nil {
		return data, nil
	}
	switch {
	case to == durationType && from != durationType && isNumber(from.Kind()):
		if reflect.ValueOf(data).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("%v is a bare number; a duration needs a unit, e.g. \"30s\", \"500ms\" or \"2h\"", data)
	case isInt(to.Kind()) && to != durationType && (from.Kind() == reflect.Float32 || from.Kind() == reflect.Float64):
		f := reflect.ValueOf(data).Float()
		if f != math.Trunc(f) {
			return nil, fmt.Errorf("%v is not a whole number", data)
		}
	}
	return data, nil
}

func isInt(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func isNumber(k reflect.Kind) bool {
	return isInt(k) || k == reflect.Float32 || k == reflect.Float64
}

// decodeLeaf checks that v converts to type t.
func decodeLeaf(t reflect.Type, v any) error {
	out := reflect.New(t)
	d, err := mapstructure.NewDecoder(decoderConfig(out.Interface()))
	if err != nil {
		return err
	}
	return d.Decode(v)
}

// cleanDecodeError strips mapstructure's framing from an error message.
func cleanDecodeError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "decoding failed due to the following error(s):")
	msg = strings.TrimSpace(msg)
	msg = strings.TrimPrefix(msg, "'' ")
	msg = strings.ReplaceAll(msg, "\n", "; ")
	return msg
}

// describe renders a value for an error message; secrets are never shown.
func describe(key string, v any) string {
	if isSecretKey(key) {
		return "a value (not shown: secret)"
	}
	var s string
	switch x := v.(type) {
	case string:
		s = fmt.Sprintf("%q", x)
	case map[string]any:
		return "a mapping"
	case []any:
		return fmt.Sprintf("a list of %d items", len(x))
	default:
		s = fmt.Sprintf("%v", x)
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}
