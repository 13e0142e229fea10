package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/cardiostream/cardiostream/internal/model"
)

// modelReport is what `model validate` prints (as JSON with --json).
type modelReport struct {
	Path         string              `json:"path"`
	Name         string              `json:"name"`
	Version      string              `json:"version"`
	SHA256       string              `json:"sha256"`
	Threshold    float64             `json:"threshold"`
	Trees        int                 `json:"trees"`
	FeatureNames []string            `json:"feature_names"`
	Metrics      model.Metrics       `json:"metrics"`
	Parity       *model.ParityReport `json:"parity,omitempty"`
	ParityNote   string              `json:"parity_note,omitempty"`
}

func (c *cli) modelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Model artifacts and the model registry (push, list, activate, rollback, shadow, history)",
	}
	var asJSON bool
	validate := &cobra.Command{
		Use:   "validate PATH",
		Short: "Load a model artifact exactly as the scorer would and check its golden predictions",
		Long: `validate loads the artifact (a directory with manifest.json, or the manifest
itself) with the scorer's loader: checksum, format, booster, objective and feature
names are checked before the model is used. When the artifact ships golden.csv
(predictions made by XGBoost itself), every row must agree within 1e-6.
Use "default" as PATH for the embedded model.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			var m *model.Model
			var err error
			if path == "default" {
				m, err = model.LoadDefault()
			} else {
				m, err = model.LoadPath(path)
			}
			if err != nil {
				return fmt.Errorf("model %s is not usable: %w", path, err)
			}
			man := m.Manifest()
			rep := modelReport{
				Path: path, Name: m.Name(), Version: m.Version(), SHA256: m.SHA256(),
				Threshold: m.Threshold(), Trees: m.NumTrees(), FeatureNames: man.FeatureNames, Metrics: man.Metrics,
			}
			parity, perr := m.VerifyGolden()
			switch {
			case perr == nil:
				rep.Parity = &parity
			default:
				rep.ParityNote = perr.Error()
			}
			if asJSON {
				out, _ := json.MarshalIndent(rep, "", "  ")
				fmt.Fprintln(c.stdout, string(out))
			} else {
				fmt.Fprintf(c.stdout, "model:     %s %s\nsha256:    %s\nthreshold: %g\ntrees:     %d\nfeatures:  %v\nheld-out:  accuracy %.4f, AUC %.4f, Brier %.4f\n",
					rep.Name, rep.Version, rep.SHA256, rep.Threshold, rep.Trees, rep.FeatureNames,
					man.Metrics.HeldoutAccuracy, man.Metrics.HeldoutAUC, man.Metrics.HeldoutBrier)
				if rep.Parity != nil {
					fmt.Fprintf(c.stdout, "parity:    %d rows, max |diff| %.3g (tolerance %g): %s\n", parity.Rows, parity.MaxAbsDiff, parity.Tolerance, okWord(parity.OK()))
				} else {
					fmt.Fprintf(c.stdout, "parity:    not checked: %s\n", rep.ParityNote)
				}
			}
			if perr != nil && !isNoGolden(perr) {
				return fmt.Errorf("model %s: golden predictions: %w", path, perr)
			}
			if rep.Parity != nil && !parity.OK() {
				return fmt.Errorf("model %s: parity check failed: max |diff| %.3g > %g at line %d of %s", path, parity.MaxAbsDiff, parity.Tolerance, parity.WorstLine, parity.File)
			}
			return nil
		},
	}
	validate.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.AddCommand(validate)
	cmd.AddCommand(c.registryCmds()...) // registrycmd.go
	cmd.AddCommand(c.modelCompareCmd()) // comparecmd.go
	return cmd
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}

// isNoGolden reports whether the artifact simply ships no golden file.
func isNoGolden(err error) bool { return errors.Is(err, fs.ErrNotExist) }
