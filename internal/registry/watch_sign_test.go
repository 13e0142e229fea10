package registry_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
)

func TestWatchDeliversCurrentStateThenChanges(t *testing.T) {
	e := newEnv(t, nil)
	e.push(t, dirV100, "1.0.0")
	e.push(t, dirV110, "1.1.0")
	opts := registry.ChangeOptions{Actor: "tester@host"}
	if _, err := e.r.Activate(ctx(t), "1.0.0", opts); err != nil {
		t.Fatal(err)
	}
	// A second handle watches, as a scorer process would.
	w := openRegistry(t, e.js, nil)
	wctx := ctx(t)
	ch, err := w.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func(cond func(registry.Pointers) error) registry.Pointers {
		t.Helper()
		timeout := time.After(30 * time.Second)
		var last error
		for {
			select {
			case p, ok := <-ch:
				if !ok {
					t.Fatal("watch channel closed")
				}
				if last = cond(p); last == nil {
					return p
				}
			case <-timeout:
				t.Fatalf("no matching state: %v", last)
			}
		}
	}
	first := next(func(p registry.Pointers) error {
		if p.Active == nil || p.Active.Version != "1.0.0" || p.Shadow != nil {
			return fmt.Errorf("state %+v", p)
		}
		return nil
	})
	if first.Revision == 0 {
		t.Errorf("initial state has no revision")
	}
	start := time.Now()
	if _, err := e.r.Activate(ctx(t), "1.1.0", opts); err != nil {
		t.Fatal(err)
	}
	next(func(p registry.Pointers) error {
		if p.Active == nil || p.Active.Version != "1.1.0" || p.Active.Previous != "1.0.0" {
			return fmt.Errorf("state active %+v", p.Active)
		}
		return nil
	})
	t.Logf("FIGURE TestWatchDeliversCurrentStateThenChanges activate_to_watch_ms=%.1f", float64(time.Since(start).Microseconds())/1000)
	if _, err := e.r.SetShadow(ctx(t), "1.0.0", opts); err != nil {
		t.Fatal(err)
	}
	next(func(p registry.Pointers) error {
		if p.Shadow == nil || p.Shadow.Version != "1.0.0" || p.Active.Version != "1.1.0" {
			return fmt.Errorf("state %+v", p)
		}
		return nil
	})
	if _, err := e.r.ShadowOff(ctx(t), opts); err != nil {
		t.Fatal(err)
	}
	next(func(p registry.Pointers) error {
		if p.Shadow != nil {
			return fmt.Errorf("shadow still %+v", p.Shadow)
		}
		return nil
	})
}

func TestWatchWithNothingSet(t *testing.T) {
	e := newEnv(t, nil)
	ch, err := e.r.Watch(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-ch:
		if p.Active != nil || p.Shadow != nil {
			t.Fatalf("state %+v, want none set", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no initial state")
	}
}

func newKey(t testing.TB) (ed25519.PrivateKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, base64.StdEncoding.EncodeToString(pub)
}

func TestSignatures(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	good, goodPub := newKey(t)
	wrong, wrongPub := newKey(t)
	_, otherPub := newKey(t) // a second trusted key that signed nothing

	pusher := openRegistry(t, js, nil)
	pushAs := func(dir, version string, key ed25519.PrivateKey) {
		t.Helper()
		if _, err := pusher.Push(ctx(t), readArtifact(t, dir), registry.PushOptions{Version: version, Actor: "ci@host", SignKey: key}); err != nil {
			t.Fatal(err)
		}
	}
	pushAs(dirV100, "1.0.0", good)      // signed with a trusted key
	pushAs(dirV110, "1.1.0", nil)       // unsigned
	pushAs(dirPoor, poorVersion, wrong) // signed with an untrusted key

	dev := openRegistry(t, js, func(c *registry.Config) { c.PublicKeys = []string{otherPub, goodPub} })
	prod := openRegistry(t, js, func(c *registry.Config) { c.PublicKeys = []string{goodPub}; c.Production = true })
	prodNoKeys := openRegistry(t, js, func(c *registry.Config) { c.Production = true })

	tests := []struct {
		name       string
		r          *registry.Registry
		version    string
		wantErr    error
		wantSigned bool
	}{
		{"good signature, dev", dev, "1.0.0", nil, true},
		{"good signature, production", prod, "1.0.0", nil, true},
		{"unsigned, dev with keys: accepted", dev, "1.1.0", nil, false},
		{"unsigned, production with keys: refused", prod, "1.1.0", registry.ErrUnsigned, false},
		{"unsigned, production without keys: accepted", prodNoKeys, "1.1.0", nil, false},
		{"wrong key, dev", dev, poorVersion, registry.ErrBadSignature, false},
		{"wrong key, production", prod, poorVersion, registry.ErrBadSignature, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := tt.r.Fetch(ctx(t), tt.version)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Fetch: err %v, want %v", err, tt.wantErr)
			}
			if err == nil && a.Signed != tt.wantSigned {
				t.Fatalf("Signed = %v, want %v", a.Signed, tt.wantSigned)
			}
			if err != nil && (containsKey(err.Error(), goodPub) || containsKey(err.Error(), otherPub) || containsKey(err.Error(), wrongPub)) {
				t.Fatalf("error reveals a key: %v", err)
			}
		})
	}

	// Signing an unsigned version later (same artifact, --sign-key) makes it
	// acceptable in production.
	pushAs(dirV110, "1.1.0", good)
	if _, err := prod.Fetch(ctx(t), "1.1.0"); err != nil {
		t.Fatalf("after signing: %v", err)
	}
	// A replaced signature object is refused.
	obj, _ := js.ObjectStore(ctx(t), registry.DefaultModelsBucket)
	sig, _ := obj.GetBytes(ctx(t), "1.0.0/signature")
	if _, err := obj.PutBytes(ctx(t), "1.0.0/signature", registry.Sign(wrong, "1.0.0", map[string]string{"model.json": "00"})); err != nil {
		t.Fatal(err)
	}
	if _, err := prod.Fetch(ctx(t), "1.0.0"); !errors.Is(err, registry.ErrTampered) && !errors.Is(err, registry.ErrBadSignature) {
		t.Fatalf("replaced signature: err %v", err)
	}
	_ = sig
}

func containsKey(s, key string) bool {
	return len(key) > 0 && len(s) >= len(key) && indexOf(s, key) >= 0
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestConfigValidate(t *testing.T) {
	priv, pub := newKey(t)
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pemPub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	tests := []struct {
		name    string
		mutate  func(*registry.Config)
		wantErr string
	}{
		{name: "defaults", mutate: func(*registry.Config) {}},
		{name: "key", mutate: func(c *registry.Config) { c.PublicKeys = []string{pub} }},
		{name: "PEM key", mutate: func(c *registry.Config) { c.PublicKeys = []string{pemPub} }},
		{name: "PEM private key as public", mutate: func(c *registry.Config) {
			c.PublicKeys = []string{"-----BEGIN PUBLIC KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PUBLIC KEY-----\n"}
		}, wantErr: "registry.public_keys[0]"},
		{name: "bad key", mutate: func(c *registry.Config) { c.PublicKeys = []string{"bm90IGEga2V5"} }, wantErr: "registry.public_keys[0]"},
		{name: "bucket", mutate: func(c *registry.Config) { c.ModelsBucket = "a.b" }, wantErr: "registry.models_bucket"},
		{name: "same buckets", mutate: func(c *registry.Config) { c.PointersBucket = c.ModelsBucket }, wantErr: "registry.pointers_bucket"},
		{name: "accuracy", mutate: func(c *registry.Config) { c.Gates.MinAccuracy = 1.5 }, wantErr: "registry.gates.min_accuracy"},
		{name: "brier", mutate: func(c *registry.Config) { c.Gates.MaxBrier = -1 }, wantErr: "registry.gates.max_brier"},
		{name: "timeout", mutate: func(c *registry.Config) { c.Timeout = 0 }, wantErr: "registry.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := registry.DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || indexOf(err.Error(), tt.wantErr) < 0 {
				t.Fatalf("err %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}
