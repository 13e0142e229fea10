package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func (c *cli) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Validate or show the effective configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [--env NAME] [--config FILE]",
		Short: "Check the configuration for an environment; one line per problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				fmt.Fprintf(c.stdout, "configuration for %s is invalid:\n%v\n", cfg.Env, err)
				return fmt.Errorf("configuration for %s is invalid", cfg.Env)
			}
			fmt.Fprintf(c.stdout, "configuration for %s is valid\n", cfg.Env)
			return nil
		},
	}, &cobra.Command{
		Use:   "show [--env NAME] [--config FILE]",
		Short: "Print the effective configuration as YAML, secrets redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			out, err := yaml.Marshal(cfg.Redacted())
			if err != nil {
				return fmt.Errorf("printing configuration: %w", err)
			}
			_, err = c.stdout.Write(out)
			return err
		},
	})
	return cmd
}
