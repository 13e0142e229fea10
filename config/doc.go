// Package config owns cardiostream's configuration: the top-level Config that
// gathers every component's Config, loading it from its layers, checking it
// (per environment) and showing it without secrets.
//
// # Layers
//
// Load builds one local koanf instance and merges, later layers winning:
//
//  1. built-in defaults: Default(), i.e. every component's DefaultConfig();
//  2. the section of the embedded environments.yml for the chosen
//     environment (development, staging or production);
//  3. the optional user file (--config FILE, YAML);
//  4. environment variables;
//  5. command-line flags the user actually set.
//
// The environment is chosen by --env (LoadOptions.Env), else DEPLOYMENT_ENV,
// else the user file's top-level "env" key, else development. An unknown
// environment is an error listing the valid ones. A user file that names an
// environment other than the chosen one is an error too: a file written for
// production never applies to staging by accident.
//
// # The user file
//
// The --config file is normally plain configuration: the same keys as
// environments.yml's sections, at the top level (scorer.batch_size is
// "scorer: {batch_size: 500}"), optionally with "env: production" to say
// which environment it is for. A file whose top-level keys are environment
// names instead (the shape of environments.yml, so that file itself can be
// given with --config) is read the same way, using only the chosen
// environment's section; such a file must have a section for the chosen
// environment. Mixing both shapes is an error. A YAML key with an empty value
// (null) is ignored; to set a string to empty write "".
//
// # Environment variables
//
// The deployment guide's variables are honoured as written:
//
//	DEPLOYMENT_ENV          the environment (see above)
//	API_KEY                 security.api_key
//	MONITORING_KEY          security.monitoring_key (bearer token for /metrics)
//	MODEL_PATH              model.path
//	ALERT_WEBHOOK           webhook.url
//	ALERT_WEBHOOK_SECRET    webhook.secret
//
// Every other key is CARDIOSTREAM_<SECTION>__<KEY>: a double underscore
// nests, names are lower-cased, single underscores stay
// (CARDIOSTREAM_SCORER__BATCH_SIZE=500 is scorer.batch_size,
// CARDIOSTREAM_NATS__EMBEDDED__SYNC_ALWAYS=true is nats.embedded.sync_always).
// CARDIOSTREAM_ variables without a double underscore are not configuration
// and are ignored. Variables with an empty value are ignored (an undefined
// variable in a compose file expands to empty). A guide variable and its
// CARDIOSTREAM_ spelling set to different values is an error.
//
// # Strictness
//
// Unknown keys in any layer (a typo in the file, a misspelt CARDIOSTREAM_
// variable) are errors with a suggestion, not silently ignored; values are
// checked against the key's type, and a bare number is refused for a
// duration ("30" is ambiguous; write "30s"). Load reports every problem, one
// line each, naming the key and where its value came from.
//
// Validate checks the loaded configuration: every component's Validate,
// cross-checks between components (e.g. the PREDICTIONS duplicate window
// must cover scorer.ack_wait × scorer.max_deliver) and what the environment
// requires (production: an https alert webhook with a signing secret of at
// least 32 bytes, durable NATS, API and monitoring keys, JSON logs, ...).
//
// # Secrets
//
// Every secret is an internal/secret.String, which redacts itself in fmt,
// JSON, YAML and slog; Redacted shows the configuration with each secret as
// "<set>" or "<unset>".
//
// This package is used by cmd only. It imports the components' packages for
// their Config types; no component may import it.
package config
