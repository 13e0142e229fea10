package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/cardiostream/cardiostream/internal/jsretry"
	"github.com/cardiostream/cardiostream/schemas"
)

// compareFlags maps the flags of `model compare` to configuration keys.
var compareFlags = map[string]string{"nats-url": "nats.url"}

// versionScore is one version's metrics over the joined records.
type versionScore struct {
	Version   string  `json:"version"`
	N         int     `json:"n"`
	Accuracy  float64 `json:"accuracy"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	AUC       float64 `json:"auc"`
	Brier     float64 `json:"brier"`
	// Predictions is how many records this version predicted (main or
	// shadow), joined or not.
	Predictions int `json:"predictions"`
}

// comparison is what `model compare` prints (as JSON with --json).
type comparison struct {
	A versionScore `json:"a"`
	B versionScore `json:"b"`
	// N is the number of joined records: predictions from both versions and
	// an outcome. Agreement is the fraction of them where A and B predicted
	// the same label.
	N         int     `json:"n"`
	Agreement float64 `json:"agreement"`
	// Outcomes is the number of distinct outcomes read.
	Outcomes int `json:"outcomes"`
}

func (c *cli) modelCompareCmd() *cobra.Command {
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "compare A B",
		Short: "Compare two model versions on the same records, from the streams",
		Long: `compare reads every prediction in PREDICTIONS (main and shadow:
<prefix>.predictions.> ) and every outcome in OUTCOMES, keeps the records that
have a prediction from version A, one from version B and an outcome, and prints
both versions' accuracy, precision, recall, F1, AUC and Brier score on exactly
those records, their number n and the agreement (fraction of them where A and B
predicted the same label). Typically A is the active version and B a shadow.`,
		Example: `  cardiostream model compare 1.0.0 1.1.0 --nats-url nats://127.0.0.1:4222
  cardiostream model compare 1.0.0 1.1.0 --json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == args[1] {
				return usageError{fmt.Errorf("compare needs two different versions, got %q twice", args[0])}
			}
			cfg, err := c.loadConfig(cmd, compareFlags)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid configuration (see `cardiostream config validate`):\n%w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			log := c.newLogger(cfg)
			nc, err := connectNATS(ctx, cfg, clientURL(cfg), "cardiostream-model-compare", log)
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			cmp, err := compareVersions(ctx, js, cfg.Streams.Subjects(), args[0], args[1])
			if err != nil {
				return err
			}
			if asJSON {
				b, _ := json.MarshalIndent(cmp, "", "  ")
				fmt.Fprintln(c.stdout, string(b))
			} else {
				printComparison(c.stdout, cmp)
			}
			if cmp.N == 0 {
				return fmt.Errorf("no record has predictions from both %s and %s and an outcome (predictions: %s %d, %s %d; outcomes %d)",
					args[0], args[1], args[0], cmp.A.Predictions, args[1], cmp.B.Predictions, cmp.Outcomes)
			}
			return nil
		},
	}
	addRoleFlags(cmd)
	_ = cmd.Flags().MarkHidden("metrics-addr")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the comparison as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up reading the streams after this long")
	return cmd
}

func printComparison(w io.Writer, c comparison) {
	fmt.Fprintf(w, "records with predictions from both versions and an outcome: %d\n\n", c.N)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "metric\t%s\t%s\t\n", c.A.Version, c.B.Version)
	row := func(name string, a, b float64) { fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t\n", name, a, b) }
	fmt.Fprintf(tw, "n\t%d\t%d\t\n", c.A.N, c.B.N)
	row("accuracy", c.A.Accuracy, c.B.Accuracy)
	row("precision", c.A.Precision, c.B.Precision)
	row("recall", c.A.Recall, c.B.Recall)
	row("f1", c.A.F1, c.B.F1)
	row("auc", c.A.AUC, c.B.AUC)
	row("brier", c.A.Brier, c.B.Brier)
	fmt.Fprintf(tw, "predictions (all)\t%d\t%d\t\n", c.A.Predictions, c.B.Predictions)
	_ = tw.Flush()
	fmt.Fprintf(w, "\nagreement (same label on the same records): %.4f\n", c.Agreement)
}

type recKey struct{ source, id string }

type scored struct {
	prob  float64
	label int
}

// compareVersions reads the streams as they are now and compares a and b.
func compareVersions(ctx context.Context, js jetstream.JetStream, subjects schemas.Subjects, a, b string) (comparison, error) {
	preds := map[string]map[recKey]scored{a: {}, b: {}}
	err := readStream(ctx, js, schemas.StreamPredictions, subjects.AllPredictions(), func(m jetstream.Msg) {
		version, k, sc, ok := decodeComparedPrediction(m.Data())
		if !ok {
			return
		}
		byRec, ok := preds[version]
		if !ok {
			return
		}
		if _, dup := byRec[k]; !dup { // the first stored prediction counts, as for the monitor
			byRec[k] = sc
		}
	})
	if err != nil {
		return comparison{}, err
	}
	outcomes := map[recKey]int{}
	err = readStream(ctx, js, schemas.StreamOutcomes, subjects.AllOutcomes(), func(m jetstream.Msg) {
		src, ok := subjects.SourceOf("outcomes", m.Subject())
		if !ok {
			return
		}
		o, err := schemas.DecodeOutcome(m.Data())
		if err != nil || (o.Label != 0 && o.Label != 1) {
			return
		}
		if _, dup := outcomes[recKey{src, o.RecordID}]; !dup {
			outcomes[recKey{src, o.RecordID}] = o.Label
		}
	})
	if err != nil {
		return comparison{}, err
	}
	return compare(a, b, preds[a], preds[b], outcomes), nil
}

// decodeComparedPrediction reads what `model compare` needs from a
// PREDICTIONS message: the model version, the record (source and id) and
// the score. Anyone who may publish to PREDICTIONS can write there, so only
// a prediction a scorer could have written counts (ok): a valid source and
// record id, a label of 0 or 1 and a probability in [0, 1]; a label of 7 or
// a probability of 1e300 would otherwise skew every metric of the
// comparison.
func decodeComparedPrediction(data []byte) (version string, k recKey, s scored, ok bool) {
	var p schemas.Prediction
	if json.Unmarshal(data, &p) != nil || !schemas.ValidID(p.RecordID) || !schemas.ValidSource(p.Source) ||
		p.Model.Version == "" || (p.Label != 0 && p.Label != 1) || !(p.Probability >= 0 && p.Probability <= 1) {
		return "", recKey{}, scored{}, false
	}
	return p.Model.Version, recKey{p.Source, p.RecordID}, scored{prob: p.Probability, label: p.Label}, true
}

// compare joins the two versions' predictions with the outcomes and scores
// both on the records all three share.
func compare(a, b string, pa, pb map[recKey]scored, outcomes map[recKey]int) comparison {
	var ys []int
	var sa, sb []scored
	agree := 0
	// Iterate in a fixed order so that the floating-point sums, and so the
	// printed numbers, do not depend on map order.
	keys := make([]recKey, 0, len(pa))
	for k := range pa {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y recKey) int {
		if x.source != y.source {
			return compareStrings(x.source, y.source)
		}
		return compareStrings(x.id, y.id)
	})
	for _, k := range keys {
		y, ok := outcomes[k]
		if !ok {
			continue
		}
		q, ok := pb[k]
		if !ok {
			continue
		}
		p := pa[k]
		ys, sa, sb = append(ys, y), append(sa, p), append(sb, q)
		if p.label == q.label {
			agree++
		}
	}
	c := comparison{A: score(a, ys, sa), B: score(b, ys, sb), N: len(ys), Outcomes: len(outcomes)}
	c.A.Predictions, c.B.Predictions = len(pa), len(pb)
	if c.N > 0 {
		c.Agreement = float64(agree) / float64(c.N)
	}
	return c
}

func compareStrings(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// score computes one version's metrics; labels are the predictions' own
// (each at its model's threshold), AUC and Brier use the probabilities.
func score(version string, ys []int, ps []scored) versionScore {
	v := versionScore{Version: version, N: len(ys)}
	if len(ys) == 0 {
		return v
	}
	var tp, fp, tn, fn int
	var brier float64
	for i, y := range ys {
		switch {
		case ps[i].label == 1 && y == 1:
			tp++
		case ps[i].label == 1:
			fp++
		case y == 0:
			tn++
		default:
			fn++
		}
		d := ps[i].prob - float64(y)
		brier += d * d
	}
	div := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	v.Accuracy = div(tp+tn, len(ys))
	v.Precision = div(tp, tp+fp)
	v.Recall = div(tp, tp+fn)
	v.F1 = div(2*tp, 2*tp+fp+fn)
	v.Brier = brier / float64(len(ys))
	v.AUC = auc(ys, ps)
	return v
}

// auc is the area under the ROC curve: the probability that a random
// positive is scored above a random negative, ties counting one half
// (Mann-Whitney U with mid-ranks). 0 when either class is absent.
func auc(ys []int, ps []scored) float64 {
	idx := make([]int, len(ys))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int {
		switch {
		case ps[i].prob < ps[j].prob:
			return -1
		case ps[i].prob > ps[j].prob:
			return 1
		}
		return 0
	})
	var pos, neg int
	var rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && ps[idx[j]].prob == ps[idx[i]].prob {
			j++
		}
		mid := float64(i+j+1) / 2 // mean of ranks i+1 .. j
		for k := i; k < j; k++ {
			if ys[idx[k]] == 1 {
				pos++
				rankSum += mid
			} else {
				neg++
			}
		}
		i = j
	}
	if pos == 0 || neg == 0 {
		return 0
	}
	return (rankSum - float64(pos)*float64(pos+1)/2) / (float64(pos) * float64(neg))
}

// readStream calls fn with every message of stream on filter stored when
// it is called, in order, with an ordered consumer. Requests that find no
// responder or no answer are repeated (backing off, until ctx ends): on a cluster a
// stream can be without a leader for seconds, and a pull can reach the
// node of a just-created ordered consumer before that node listens for it.
// A repeated fetch resumes after the last message delivered.
func readStream(ctx context.Context, js jetstream.JetStream, stream, filter string, fn func(jetstream.Msg)) error {
	var cons jetstream.Consumer
	var last uint64
	err := retryRead(ctx, func(ctx context.Context) error {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return fmt.Errorf("looking up stream %s: %w", stream, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("reading stream %s info: %w", stream, err)
		}
		if last = info.State.LastSeq; info.State.Msgs == 0 {
			return nil
		}
		cons, err = s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", stream, err)
		}
		return nil
	})
	if err != nil || cons == nil {
		return err
	}
	for {
		got := 0
		done := false
		err := retryRead(ctx, func(context.Context) error { // Fetch has its own bound
			batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				return fmt.Errorf("reading stream %s: %w", stream, err)
			}
			for m := range batch.Messages() {
				got++
				fn(m)
				md, err := m.Metadata()
				if err != nil {
					continue
				}
				if md.Sequence.Stream >= last || md.NumPending == 0 {
					done = true
					return nil
				}
			}
			if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
				return fmt.Errorf("reading stream %s: %w", stream, err)
			}
			return nil
		})
		switch {
		case err != nil:
			return err
		case done:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("reading stream %s: %w", stream, ctx.Err())
		case got == 0:
			// Messages up to last expired meanwhile: nothing more to read.
			return nil
		}
	}
}

// retryRead runs the read step again while the cluster leaves it
// unanswered (jsretry.Transient: no responder, or the 2 s attempt ran out),
// backing off, until ctx ends.
func retryRead(ctx context.Context, step func(ctx context.Context) error) error {
	err := jsretry.Do(ctx, 2*time.Second, jsretry.Transient, nil, step)
	if errors.Is(err, jsretry.ErrNoAnswer) {
		return fmt.Errorf("%w; run the command again or raise --timeout", err)
	}
	return err
}
