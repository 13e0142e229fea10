package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/monitor"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestClusterTopology: a scorer and a monitor started against a 3-node
// cluster (the URL list) place every stream, bucket and durable consumer
// with the configured replicas, each follower current. With streams.replicas
// 3 everything is R3 (the monitor's state bucket and its audit consumer
// follow the streams). With only monitor.replicas 3, the monitor's state
// bucket is R3 and its consumer on the shared R1 AUDIT stream R1 (a
// regression test: monitor consumers were made R3, which the server
// refuses, and the monitor never became ready).
func TestClusterTopology(t *testing.T) {
	// The registry's buckets (KV_CARDIO_MODEL_REGISTRY, OBJ_CARDIO_MODELS) follow
	// streams.replicas like the shared streams; only the monitor's own follow
	// monitor.replicas.
	monitorOwn := func(stream string) bool {
		return strings.HasPrefix(stream, "OBJ_CARDIO_MONITOR_")
	}
	tests := []struct {
		name string
		env  string
		want func(stream string) int
	}{
		{name: "streams R3", env: "CARDIOSTREAM_STREAMS__REPLICAS=3", want: func(string) int { return 3 }},
		{name: "monitor R3 on R1 streams", env: "CARDIOSTREAM_MONITOR__REPLICAS=3", want: func(s string) int {
			if monitorOwn(s) {
				return 3
			}
			return 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clusterCheckTopology(t, natstest.RunCluster(t, 3), tt.env, tt.want)
		})
	}
}

func clusterCheckTopology(t *testing.T, c *natstest.Cluster, envVar string, want func(stream string) int) {
	// The webhook URL only has to exist for the notifier's consumer to be
	// made; nothing fires here.
	env := testEnviron(envVar,
		"ALERT_WEBHOOK=http://127.0.0.1:1/hooks", "ALERT_WEBHOOK_SECRET=cluster-test-secret-0123456789abcdef")
	procs := []*running{
		start(t, env, "scorer", "--nats-url", c.URLs(), "--metrics-addr", "127.0.0.1:0"),
		start(t, env, "monitor", "--nats-url", c.URLs(), "--metrics-addr", "127.0.0.1:0"),
	}
	for _, p := range procs {
		natstest.Eventually(t, 60*time.Second, func() error {
			resp, err := http.Get("http://" + p.info.MetricsAddr + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("/readyz: %s", resp.Status)
			}
			return nil
		})
	}

	_, js := natstest.ConnectCluster(t, c)
	var streamNames, consumerNames []string
	natstest.Eventually(t, 30*time.Second, func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		defer func() {
			if err != nil {
				t.Log(err)
			}
		}()
		streamNames, consumerNames = nil, nil
		lister := js.ListStreams(ctx)
		for si := range lister.Info() {
			name := si.Config.Name
			streamNames = append(streamNames, name)
			r := want(name)
			if si.Config.Replicas != r || si.Cluster == nil || len(si.Cluster.Replicas) != r-1 {
				return fmt.Errorf("stream %s: replicas %d, cluster %+v; want R%d", name, si.Config.Replicas, si.Cluster, r)
			}
			for _, r := range si.Cluster.Replicas {
				if !r.Current {
					return fmt.Errorf("stream %s: follower %s not current", name, r.Name)
				}
			}
			s, err := js.Stream(ctx, name)
			if err != nil {
				return err
			}
			cl := s.ListConsumers(ctx)
			for ci := range cl.Info() {
				if ci.Config.Durable == "" {
					// An ordered consumer (the monitor reading its
					// inputs): ephemeral R1 by design, recreated by the
					// client on another node when its node is lost.
					continue
				}
				consumerNames = append(consumerNames, ci.Name)
				if cr := ci.Config.Replicas; (cr != 0 && cr != r) || ci.Cluster == nil || len(ci.Cluster.Replicas) != r-1 {
					return fmt.Errorf("consumer %s/%s: replicas %d, cluster %+v; want R%d like its stream", name, ci.Name, cr, ci.Cluster, r)
				}
			}
			if err := cl.Err(); err != nil {
				return err
			}
		}
		return lister.Err()
	})
	for _, want := range []string{schemas.StreamRecords, schemas.StreamPredictions, schemas.StreamOutcomes,
		schemas.StreamDeadLetter, schemas.StreamAlerts} {
		if !slices.Contains(streamNames, want) {
			t.Errorf("stream %s missing; have %v", want, streamNames)
		}
	}
	if len(streamNames) < 9 { // the five, AUDIT, the monitor's state bucket, the registry's KV and object buckets
		t.Errorf("streams %v: want the five, AUDIT, the monitor's state bucket, the registry's two buckets", streamNames)
	}
	for _, want := range []string{streams.ConsumerScorer, monitor.ConsumerAudit, streams.ConsumerAlertWebhook} {
		if !slices.Contains(consumerNames, want) {
			t.Errorf("consumer %s missing; have %v", want, consumerNames)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kvs := 0
	for st := range js.KeyValueStores(ctx).Status() {
		kvs++
		stream := st.(interface{ StreamInfo() *jetstream.StreamInfo }).StreamInfo()
		if r := stream.Config.Replicas; r != want(stream.Config.Name) {
			t.Errorf("KV bucket %s: %d replicas, want %d", st.Bucket(), r, want(stream.Config.Name))
		}
	}
	if kvs < 1 {
		t.Errorf("%d KV buckets, want the registry's", kvs)
	}
	objs := 0
	for st := range js.ObjectStores(ctx).Status() {
		objs++
		if r := st.Replicas(); r != want("OBJ_"+st.Bucket()) {
			t.Errorf("object bucket %s: %d replicas, want %d", st.Bucket(), r, want("OBJ_"+st.Bucket()))
		}
	}
	if objs < 2 {
		t.Errorf("%d object buckets, want the monitor's state and the registry's models", objs)
	}
	for _, p := range procs {
		if code := p.stop(t); code != 0 {
			t.Errorf("exit %d; stderr:\n%s", code, p.stderr.String())
		}
	}
}
