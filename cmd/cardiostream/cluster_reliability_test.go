//go:build reliability

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// Cluster node-loss runs: the size of the replay and how long the lost node
// stays down (in records stored while it is down, not in time).
const (
	clusterRepeat     = 12 // × 920 UCI rows = 11,040 records
	clusterRate       = "1500"
	clusterDownRecord = 3000 // records stored while the node is down
)

// TestClusterNodeLoss is promise 2 of issue 3 (broker node loss): a 3-node
// JetStream cluster with R3 streams and consumers, two `cardiostream scorer`
// OS processes and a `cardiostream replay` OS process, all given the list of
// the three client URLs. While records flow, the node leading the RECORDS
// stream or the one leading the scorers' durable consumer is lost: shut down
// (in-process nodes) or killed with SIGKILL (the -kill9 cases: nats-server OS
// processes, no clean shutdown). Scoring must resume on its own; the node is
// restarted once
// clusterDownRecord more records were stored without it and must catch up.
// The end state, read from the streams, must be exactly-once: every record
// id one prediction or one dead letter, none missing, none duplicated; a
// monitor process that lived through the loss counts each output once.
func TestClusterNodeLoss(t *testing.T) {
	recordsLeader := func(t *testing.T, c *natstest.Cluster) *natstest.Node {
		return c.StreamLeader(t, schemas.StreamRecords)
	}
	consumerLeader := func(t *testing.T, c *natstest.Cluster) *natstest.Node {
		return c.ConsumerLeader(t, schemas.StreamRecords, streams.ConsumerScorer)
	}
	tests := []struct {
		name string
		// victim picks the node to lose; stream and consumer leaders are
		// first moved apart so that each case loses only one of them.
		victim func(t *testing.T, c *natstest.Cluster) *natstest.Node
		// kill9 runs the nodes as nats-server OS processes and loses the
		// victim with SIGKILL instead of an in-process Shutdown.
		kill9 bool
	}{
		{name: "records-stream-leader", victim: recordsLeader},
		{name: "scorer-consumer-leader", victim: consumerLeader},
		{name: "records-stream-leader-kill9", victim: recordsLeader, kill9: true},
		{name: "scorer-consumer-leader-kill9", victim: consumerLeader, kill9: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clusterNodeLoss(t, tt.victim, tt.kill9)
		})
	}
}

func clusterNodeLoss(t *testing.T, victim func(*testing.T, *natstest.Cluster) *natstest.Node, kill9 bool) {
	var c *natstest.Cluster
	if kill9 {
		c = natstest.RunClusterProcesses(t, 3)
	} else {
		c = natstest.RunCluster(t, 3)
	}
	t0 := time.Now()
	nc, js := natstest.ConnectCluster(t, c)
	scfg := streams.DefaultConfig()
	scfg.Replicas = 3
	natstest.EnsureStreams(t, js, &scfg)
	env := testEnviron("CARDIOSTREAM_STREAMS__REPLICAS=3", "CARDIOSTREAM_TEST_RUN_MAIN=1")

	var scorers []*osProc
	for i := range 2 {
		sc, _ := procStartReady(t, fmt.Sprintf("scorer-%d", i+1), env, "scorer", "--nats-url", c.URLs())
		scorers = append(scorers, sc)
	}
	mon, _ := procStartReady(t, "monitor", env, "monitor", "--nats-url", c.URLs())
	clusterSeparateLeaders(t, c, nc)
	clusterCheckR3(t, js)

	const total = clusterRepeat * 920
	args := append([]string{"replay", "--nats-url", c.URLs(), "--repeat", strconv.Itoa(clusterRepeat), "--rate", clusterRate}, uciFiles...)
	replay := procStart(t, "replay", env, "", args...)

	// Lose the node while records flow.
	natstest.Eventually(t, 120*time.Second, func() error {
		if _, n, _ := clusterLastPrediction(js); n < 2000 {
			return fmt.Errorf("%d predictions so far", n)
		}
		return nil
	})
	lost := victim(t, c)
	leads := clusterLeaderships(lost)
	recordsAtLoss := clusterLastSeq(t, js, schemas.StreamRecords)
	tStop := time.Now()
	if kill9 {
		lost.Kill(t)
	} else {
		lost.Shutdown()
	}
	tDown := time.Now()
	_, predsAtLoss, _ := clusterLastPrediction(js)
	t.Logf("%s: lost node %s (leading %v; kill -9 %v) in %s, at %d predictions, RECORDS seq %d", time.Since(t0).Round(time.Millisecond),
		lost.Name, leads, kill9, tDown.Sub(tStop).Round(time.Millisecond), predsAtLoss, recordsAtLoss)

	// Keep it down while a backlog builds up, then bring it back.
	natstest.Eventually(t, 120*time.Second, func() error {
		seq := clusterLastSeq(t, js, schemas.StreamRecords)
		if seq < recordsAtLoss+clusterDownRecord && !replay.done() {
			return fmt.Errorf("RECORDS at seq %d, restarting the node at %d", seq, recordsAtLoss+clusterDownRecord)
		}
		return nil
	})
	missed := clusterLastSeq(t, js, schemas.StreamRecords)
	tRestart := time.Now()
	lost.Restart(t)
	natstest.Eventually(t, 120*time.Second, func() error {
		st, ok := lost.StreamState(schemas.StreamRecords)
		if !ok || st.LastSeq < missed {
			return fmt.Errorf("node %s: RECORDS at seq %d (hosted %v), missed up to %d", lost.Name, st.LastSeq, ok, missed)
		}
		return nil
	})
	catchUp := time.Since(tRestart)
	t.Logf("%s: node %s rejoined and caught up to RECORDS seq %d in %s", time.Since(t0).Round(time.Millisecond), lost.Name, missed, catchUp)

	// The replay finishes on its own, every record stored once.
	code := replay.wait(t, 5*time.Minute)
	if code != 0 {
		t.Fatalf("replay exited %d; stderr:\n%s", code, replay.stderr.String())
	}
	t.Logf("%s: replay finished; publish retries logged: %d", time.Since(t0).Round(time.Millisecond),
		strings.Count(replay.stderr.String(), "publish failed, retrying"))
	var rep struct {
		Records, DuplicateRecords, FailedRecords, Unconfirmed int
	}
	if err := json.Unmarshal([]byte(lastLine(replay.stdout.String())), &rep); err != nil {
		t.Fatalf("replay report: %v\n%s", err, replay.stdout.String())
	}
	if rep.Records != total || rep.FailedRecords != 0 || rep.Unconfirmed != 0 {
		t.Errorf("replay report %+v, want %d records, none failed or unconfirmed", rep, total)
	}

	// Scoring finishes on its own.
	tReplayDone := time.Now()
	logEvery := time.NewTicker(5 * time.Second)
	defer logEvery.Stop()
	natstest.Eventually(t, 5*time.Minute, func() error {
		select {
		case <-logEvery.C:
			t.Logf("%s: scorer consumer: %s", time.Since(t0).Round(time.Millisecond), clusterConsumerState(js))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := js.Consumer(ctx, schemas.StreamRecords, streams.ConsumerScorer)
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 || info.Delivered.Stream < uint64(total) {
			return fmt.Errorf("scorer consumer: %d pending, %d awaiting ack, delivered up to %d", info.NumPending, info.NumAckPending, info.Delivered.Stream)
		}
		return nil
	})
	drain := time.Since(tReplayDone)
	t.Logf("%s: every record scored or dead-lettered, %s after the replay finished; scorer consumer: %s",
		time.Since(t0).Round(time.Millisecond), drain.Round(time.Millisecond), clusterConsumerState(js))
	for _, s := range scorers {
		if code := s.stop(t); code != 0 {
			t.Errorf("%s exited %d after SIGTERM; stderr:\n%s", s.name, code, s.stderr.String())
		}
	}
	// Every node holds the same streams as their leaders.
	for _, stream := range []string{schemas.StreamRecords, schemas.StreamPredictions, schemas.StreamDeadLetter} {
		for _, nd := range c.Nodes {
			c.WaitStreamCurrent(t, nd, stream, 60*time.Second)
		}
	}

	t.Logf("%s: scorers stopped, every node current", time.Since(t0).Round(time.Millisecond))
	// The end state, read from the streams.
	sc := readStreams(t, js)
	recovery := clusterRecovery(t, js, tDown)
	t.Logf("first prediction of a record stored after the loss was stored %s after it", recovery)

	// The monitor, which lived through the loss too, counts each output once.
	natstest.Eventually(t, 2*time.Minute, func() error {
		fams := scrape(t, mon.metricsAddr)
		p, _ := metricValue(fams, "cardiostream_monitor_predictions_total")
		d, _ := metricValue(fams, "cardiostream_monitor_dead_lettered_total")
		if int(p) != sc.nPred || int(d) != sc.nDL {
			return fmt.Errorf("monitor counted %v predictions and %v dead letters; the streams hold %d and %d", p, d, sc.nPred, sc.nDL)
		}
		return nil
	})
	if code := mon.stop(t); code != 0 {
		t.Errorf("monitor exited %d after SIGTERM; stderr:\n%s", code, mon.stderr.String())
	}
	missing, duplicated := 0, 0
	for k := range sc.records {
		switch n := len(sc.predictions[k]) + len(sc.deadLetters[k]); {
		case n == 0:
			missing++
		case n > 1:
			duplicated++
			if duplicated <= 5 {
				t.Errorf("record %v: %d predictions and %d dead letters", k, len(sc.predictions[k]), len(sc.deadLetters[k]))
			}
		}
	}
	unknown := 0
	for k := range sc.predictions {
		if _, ok := sc.records[k]; !ok {
			unknown++
		}
	}
	for k := range sc.deadLetters {
		if _, ok := sc.records[k]; !ok {
			unknown++
		}
	}
	t.Logf("FIGURE %s records=%d predictions=%d dead_letters=%d missing=%d duplicated=%d unknown=%d lost_node=%s lost_node_led=%s shutdown_s=%.2f recovery_s=%.2f catch_up_s=%.2f missed_records=%d drain_after_replay_s=%.1f run_s=%.1f",
		t.Name(), len(sc.records), sc.nPred, sc.nDL, missing, duplicated, unknown, lost.Name, strings.Join(leads, "+"),
		tDown.Sub(tStop).Seconds(), recovery.Seconds(), catchUp.Seconds(), missed-recordsAtLoss, drain.Seconds(), time.Since(t0).Seconds())
	if len(sc.records) != total {
		t.Errorf("RECORDS holds %d records, want %d", len(sc.records), total)
	}
	if missing != 0 || duplicated != 0 || unknown != 0 {
		t.Errorf("%d records without a prediction or dead letter, %d with more than one, %d outputs for unknown records", missing, duplicated, unknown)
	}
	if sc.nPred+sc.nDL != total {
		t.Errorf("%d predictions + %d dead letters, want %d", sc.nPred, sc.nDL, total)
	}
}

// clusterSeparateLeaders moves the scorer consumer's leadership off the node that
// leads RECORDS, so that losing one does not lose the other.
func clusterSeparateLeaders(t *testing.T, c *natstest.Cluster, nc *nats.Conn) {
	t.Helper()
	subj := "$JS.API.CONSUMER.LEADER.STEPDOWN." + schemas.StreamRecords + "." + streams.ConsumerScorer
	for attempt := 0; ; attempt++ {
		sl := c.StreamLeader(t, schemas.StreamRecords)
		cl := c.ConsumerLeader(t, schemas.StreamRecords, streams.ConsumerScorer)
		if sl != cl {
			return
		}
		if attempt == 10 {
			t.Fatalf("RECORDS and its consumer %s are both led by %s after %d step-downs", streams.ConsumerScorer, sl.Name, attempt)
		}
		if _, err := nc.Request(subj, nil, 5*time.Second); err != nil {
			t.Logf("consumer step-down: %v", err)
		}
		natstest.Eventually(t, 30*time.Second, func() error {
			if c.ConsumerLeader(t, schemas.StreamRecords, streams.ConsumerScorer) == cl {
				return errors.New("consumer leader unchanged")
			}
			return nil
		})
	}
}

// clusterCheckR3 asserts that every stream and consumer the system made is R3.
func clusterCheckR3(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	for name := range js.ListStreams(ctx).Info() {
		if name.Config.Replicas != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name.Config.Name, name.Config.Replicas)
		}
		s, err := js.Stream(ctx, name.Config.Name)
		if err != nil {
			t.Fatal(err)
		}
		for ci := range s.ListConsumers(ctx).Info() {
			if ci.Config.Durable == "" {
				continue // ordered (the monitor reading its ledger): ephemeral R1 by design
			}
			if r := ci.Config.Replicas; r != 0 && r != 3 || ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
				t.Errorf("consumer %s/%s: replicas %d, cluster %+v; want R3", name.Config.Name, ci.Name, r, ci.Cluster)
			}
		}
	}
}

// clusterLeaderships lists the streams and the scorer consumer nd leads.
func clusterLeaderships(nd *natstest.Node) []string {
	var out []string
	for _, s := range []string{schemas.StreamRecords, schemas.StreamPredictions, schemas.StreamDeadLetter} {
		if nd.LeadsStream(s) {
			out = append(out, s)
		}
	}
	if nd.LeadsConsumer(schemas.StreamRecords, streams.ConsumerScorer) {
		out = append(out, schemas.StreamRecords+"/"+streams.ConsumerScorer)
	}
	return out
}

func clusterLastSeq(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	var seq uint64
	natstest.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		seq = s.CachedInfo().State.LastSeq
		return nil
	})
	return seq
}

// clusterLastPrediction reads the newest message of PREDICTIONS (from the stream
// leader); ok is false while there is none or the stream has no leader.
func clusterLastPrediction(js jetstream.JetStream) (p schemas.Prediction, msgs uint64, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, schemas.StreamPredictions)
	if err != nil {
		return p, 0, false
	}
	st := s.CachedInfo().State
	if st.LastSeq == 0 {
		return p, 0, false
	}
	m, err := s.GetMsg(ctx, st.LastSeq)
	if err != nil || json.Unmarshal(m.Data, &p) != nil {
		return p, st.Msgs, false
	}
	return p, st.Msgs, true
}

// clusterRecovery reads PREDICTIONS from down on and returns how long after
// down the first prediction of a record stored after down (received_at) was
// stored: from then on both the records path and the scoring path worked
// without the lost node.
func clusterRecovery(t *testing.T, js jetstream.JetStream, down time.Time) time.Duration {
	t.Helper()
	// Like natstest.StreamMessages: a cluster that has just regained a node
	// can refuse a request for a moment (no responders), so the whole scan
	// is retried for up to a minute.
	deadline := time.Now().Add(time.Minute)
	for {
		d, found, err := clusterRecoveryScan(js, down)
		switch {
		case err == nil && found:
			return d
		case err == nil:
			t.Fatalf("no prediction of a record stored after the loss")
		case time.Now().After(deadline):
			t.Fatal(err)
		}
		t.Logf("%v; reading again", err)
		time.Sleep(500 * time.Millisecond)
	}
}

// clusterRecoveryScan reads PREDICTIONS from down until the first prediction
// of a record stored after down; found is false when there is none.
func clusterRecoveryScan(js jetstream.JetStream, down time.Time) (d time.Duration, found bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	oc, err := js.OrderedConsumer(ctx, schemas.StreamPredictions, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &down})
	if err != nil {
		return 0, false, fmt.Errorf("ordered consumer on %s: %w", schemas.StreamPredictions, err)
	}
	for {
		batch, err := oc.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return 0, false, fmt.Errorf("fetching from %s: %w", schemas.StreamPredictions, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var p schemas.Prediction
			md, err := m.Metadata()
			if err != nil {
				return 0, false, err
			}
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				return 0, false, fmt.Errorf("prediction: %w", err)
			}
			if p.ReceivedAt.After(down) {
				return md.Timestamp.Sub(down), true, nil
			}
			if md.NumPending == 0 {
				return 0, false, nil
			}
		}
		if err := batch.Error(); err != nil {
			return 0, false, fmt.Errorf("fetching from %s: %w", schemas.StreamPredictions, err)
		}
		if n == 0 {
			return 0, false, nil
		}
	}
}

// clusterConsumerState describes the scorer consumer for progress logs.
func clusterConsumerState(js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, schemas.StreamRecords, streams.ConsumerScorer)
	if err != nil {
		return err.Error()
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err.Error()
	}
	leader := ""
	if info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	return fmt.Sprintf("leader %s, pending %d, awaiting ack %d, redelivered %d, delivered up to %d, acked up to %d",
		leader, info.NumPending, info.NumAckPending, info.NumRedelivered, info.Delivered.Stream, info.AckFloor.Stream)
}
