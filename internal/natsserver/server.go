package natsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures the embedded server.
type Config struct {
	// Listen is host:port for NATS clients. Port 0 picks a free port.
	Listen string `koanf:"listen"`
	// DataDir holds JetStream's file storage.
	DataDir string `koanf:"data_dir"`
	// SyncAlways fsyncs every write before it is acknowledged (sync_interval:
	// always). Without it JetStream fsyncs lazily, every two minutes, and
	// acknowledged messages can be lost on power failure or OS crash.
	SyncAlways bool `koanf:"sync_always"`
	// ServerName names the server in logs and in cluster metadata.
	ServerName string `koanf:"server_name"`
	// StartTimeout bounds how long Start waits for the server to accept clients.
	StartTimeout time.Duration `koanf:"start_timeout"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := splitListen(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("nats.embedded.listen: %w", err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("nats.embedded.data_dir: must be set (JetStream file storage lives there)"))
	}
	if c.StartTimeout < 0 {
		errs = append(errs, errors.New("nats.embedded.start_timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port must be 0-65535", listen)
	}
	return host, port, nil
}

// Options turns the configuration into nats-server options.
func (c Config) Options() (*server.Options, error) {
	host, port, err := splitListen(c.Listen)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return &server.Options{
		ServerName: c.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   c.DataDir,
		SyncAlways: c.SyncAlways,
		NoSigs:     true, // the process owns signal handling
		NoLog:      true,
	}, nil
}

// Start starts the server and waits until it accepts clients. The caller
// shuts it down with Shutdown and WaitForShutdown.
func Start(cfg Config, log *slog.Logger) (*server.Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.Options()
	if err != nil {
		return nil, err
	}
	return StartWithOptions(opts, cfg.StartTimeout, log)
}

// checkPortFree fails fast, with advice, when the client port is taken:
// nats-server would only log the bind error and never become ready.
func checkPortFree(opts *server.Options) error {
	if opts.Port == server.RANDOM_PORT || opts.Port == 0 || opts.DontListen {
		return nil
	}
	addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("embedded nats-server cannot listen on %s: %w (is another cardiostream or nats-server running? stop it, or choose another address with --nats-listen)", addr, err)
	}
	return ln.Close()
}

// StartWithOptions starts a server from explicit options (tests and clusters use it).
func StartWithOptions(opts *server.Options, timeout time.Duration, log *slog.Logger) (*server.Server, error) {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	if err := checkPortFree(opts); err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("creating embedded nats-server: %w", err)
	}
	if log != nil {
		ns.SetLoggerV2(&slogAdapter{log: log.With("component", "nats-server")}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(timeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s:%d not ready after %s: is the port free and the data dir writable?", opts.Host, opts.Port, timeout)
	}
	return ns, nil
}

// slogAdapter routes nats-server's log lines into slog. Debug and trace are dropped.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(string, ...any)           {}
func (a *slogAdapter) Tracef(string, ...any)           {}
