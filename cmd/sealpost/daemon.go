package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/home"
	"github.com/sealpost/sealpost/node/ui"
)

// shutdownTimeout bounds a graceful shutdown: after it the daemon exits 2
// without waiting any longer.
const shutdownTimeout = 15 * time.Second

type daemonOptions struct {
	init         initOptions
	doInit       bool
	listen       []string
	bootstrap    []string
	relayService bool
	noMDNS       bool
	labAddrs     bool
	apiAddr      string
	metricsAddr  string
	logLevel     string
}

func (c *cli) daemonCommand() *cobra.Command {
	var o daemonOptions
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node until SIGINT or SIGTERM",
		Long: `Run the node: the libp2p host, its store, and the local API on HOME/api.sock.
SIGINT or SIGTERM shut it down gracefully (exit 0). Only one daemon runs on a home.

The daemon has at most one loopback TCP listener, which serves the API (to
programs with the bearer token of HOME/api.token) and the web app (to browsers
logged in through 'sealpost ui'). --api (or api in config.toml) starts it with
the daemon at that address; otherwise 'sealpost ui' starts it at [ui] listen.

With --init, a home that is not initialized yet is initialized first, as by
'sealpost init' (the --name, --profile, --passphrase-file and --no-passphrase
flags are those of init). The passphrase of a protected home comes from
--passphrase-file, SEALPOST_PASSPHRASE, or a prompt on a terminal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.daemon(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.doInit, "init", false, "initialize the home first if it is not initialized")
	o.init.addFlags(f)
	f.StringArrayVar(&o.listen, "listen", nil, "listen on this multiaddr instead of config.toml's (repeatable)")
	f.StringArrayVar(&o.bootstrap, "bootstrap", nil, "also bootstrap from this multiaddr with /p2p/ (repeatable)")
	f.BoolVar(&o.relayService, "relay-service", false, "run the community relay service")
	f.BoolVar(&o.noMDNS, "no-mdns", false, "do not discover peers on the local network")
	f.BoolVar(&o.labAddrs, "lab-addressing", false, "count "+node.LabPublic+" as public and "+node.LabPrivate+" as private addresses (the network of 'sealpost testnet lab')")
	f.StringVar(&o.apiAddr, "api", "", fmt.Sprintf("also serve the API and the web app on this loopback TCP address from the start (e.g. 127.0.0.1:%d; programs send the token of HOME/api.token)", api.DefaultPort))
	f.StringVar(&o.metricsAddr, "metrics", "", fmt.Sprintf("serve Prometheus /metrics on this address (e.g. 127.0.0.1:%d)", api.DefaultMetricsPort))
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.MarkFlagsMutuallyExclusive("passphrase-file", "no-passphrase")
	return cmd
}

// daemon runs the node until a signal, then shuts down in order: API, node,
// store, lock.
func (c *cli) daemon(ctx context.Context, o daemonOptions) (err error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return userErrorf("bad --log-level %q: want debug, info, warn or error", o.logLevel)
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	if err := checkLoopback("--api", o.apiAddr); err != nil {
		return err
	}

	h, err := c.home()
	if err != nil {
		return err
	}
	initialized := h.Initialized()
	if !initialized && !o.doInit && h.HasStore() {
		return userErrorf("%s holds a store but no config.toml: run 'sealpost init' to write a default one (the store and its identity are kept)", h.Dir)
	}
	if !initialized && !o.doInit {
		return userErrorf("%s is not initialized: run 'sealpost init' or 'sealpost daemon --init'", h.Dir)
	}
	if !initialized {
		if err := o.init.check(); err != nil {
			return err
		}
	}
	var cfg home.Config
	if initialized {
		if cfg, err = c.daemonConfig(h, o); err != nil {
			return err
		}
	}
	if err := h.Create(); err != nil {
		return err
	}
	lock, err := c.lock(h)
	if err != nil {
		return err
	}
	defer lock.Unlock()

	// The passphrase before the signal handler: Ctrl-C at the prompt ends
	// the process at once.
	var pass []byte
	if initialized {
		pass, err = c.storePassphrase(h, o.init)
	} else {
		pass, err = c.initPassphrase(h, o.init)
	}
	if err != nil {
		return err
	}
	// Read once, so nothing that reads the daemon's environment later
	// (/proc/PID/environ, a core dump) finds it. OpenStore and Init clear
	// pass itself.
	if err := home.ForgetEnvPassphrase(); err != nil {
		log.Warn("could not remove the passphrase from the process environment", "err", err)
	}

	// Signals end the daemon from here on. Once they have (or the API
	// failed), the shutdown has shutdownTimeout to finish.
	sigCtx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithCancel(sigCtx)
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		select {
		case <-finished:
		case <-time.After(shutdownTimeout):
			fmt.Fprintf(c.stderr, "sealpost: shutdown took longer than %v; exiting\n", shutdownTimeout)
			os.Exit(api.ExitInternal)
		}
	}()

	var fresh *home.InitOptions // the home's settings if this daemon initializes it
	if !initialized {
		fresh = o.init.options(pass, log)
	}
	st, id, err := h.Open(ctx, pass, fresh, log)
	if err != nil {
		return storeError(h, fresh != nil, err)
	}
	if id != nil {
		c.keptStore(h, *id)
		log.Info("initialized the home", "home", h.Dir, "profile", fresh.Profile)
		if cfg, err = c.daemonConfig(h, o); err != nil {
			st.Close()
			return err
		}
	}
	storeOpen := time.Now()
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()

	reg := prometheus.NewRegistry()
	nc, err := cfg.NodeConfig()
	if err != nil {
		return userError(err)
	}
	nc.Store = st
	if nc.Relay, err = cfg.RelayResources(); err != nil {
		return userError(err)
	}
	if nc.Blobs, err = cfg.BlobResources(); err != nil {
		return userError(err)
	}
	if nc.Files, err = cfg.FilesOptions(); err != nil {
		return userError(err)
	}
	nc.DataDir = h.Dir
	nc.Logger = log
	nc.Registry = reg
	n, err := node.New(ctx, nc)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped by a signal while starting
		}
		if errors.Is(err, node.ErrBadAddr) {
			return userError(err)
		}
		if errors.Is(err, home.ErrDiskFull) {
			return &exitError{code: api.ExitLimit, err: fmt.Errorf("start node: %w; free some space and start again", err)}
		}
		return fmt.Errorf("start node: %w", err)
	}
	defer func() {
		if cerr := n.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close node: %w", cerr)
		}
	}()

	token, err := h.Token()
	if err != nil {
		return err
	}
	app, err := ui.New(ui.Config{})
	if err != nil {
		return err
	}
	acfg := api.Config{Node: n, Gatherer: reg, Token: token, Logger: log, App: app, UIListen: cfg.UIListen()}
	if rs := n.Relay(); rs != nil {
		acfg.RelayService = rs
	}
	if m := n.Messaging(); m != nil {
		acfg.Messaging = m
	}
	if f := n.Files(); f != nil {
		acfg.Files = f
	}
	if g := n.Groups(); g != nil {
		acfg.Groups = g
	}
	srv, err := api.New(acfg)
	if err != nil {
		return err
	}
	serveErr := make(chan error, 3)
	sock, sockPath, err := h.ListenSocket()
	if err != nil {
		return err
	}
	go func() { serveErr <- srv.Serve(sock) }()
	// From here on the socket exists: Shutdown closes it, also on the error
	// paths below.
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if cfg.API != "" {
		addr, err := srv.ListenTCP(cfg.API, false)
		if err != nil {
			return userErrorf("--api %s: %v", cfg.API, err)
		}
		log.Info("serving the API and the web app", "addr", addr)
	}
	if cfg.Metrics != "" {
		ln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return userErrorf("--metrics %s: %v", cfg.Metrics, err)
		}
		go func() { serveErr <- srv.ServeMetrics(ln) }()
	}

	info := n.Info()
	log.Info("sealpost daemon ready",
		"home", h.Dir, "api", sockPath, "peer_id", info.PeerID, "user_id", info.UserID,
		"profile", cfg.Profile, "since_start", time.Since(c.start).Round(time.Millisecond),
		"since_store_open", time.Since(storeOpen).Round(time.Millisecond))
	for _, a := range info.Addrs {
		log.Info("listening", "addr", a)
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		stopSignals() // the default action again: a second signal ends the process
		return nil
	case err := <-serveErr:
		cancel() // the shutdown's deadline starts
		return err
	}
}

// daemonConfig reads the home's config.toml and lays the daemon's flags
// over it.
func (c *cli) daemonConfig(h home.Home, o daemonOptions) (home.Config, error) {
	cfg, err := h.ReadConfig()
	if err != nil {
		return cfg, userError(err)
	}
	if o.init.profile != "" && o.init.profile != cfg.Profile {
		// A home keeps its profile; say so rather than ignore the flag.
		return cfg, userErrorf("%s was initialized with profile %s; edit its config.toml to change settings", h.Dir, cfg.Profile)
	}
	applyDaemonFlags(&cfg, o)
	if err := checkLoopback("api in config.toml", cfg.API); err != nil {
		return cfg, err
	}
	if err := checkLoopback("[ui] listen in config.toml", cfg.UIListen()); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// applyDaemonFlags lays the daemon's flags over the config file's settings.
func applyDaemonFlags(cfg *home.Config, o daemonOptions) {
	if len(o.listen) > 0 {
		cfg.Listen = o.listen
	}
	cfg.Bootstrap = append(cfg.Bootstrap, o.bootstrap...)
	if o.relayService {
		cfg.RelayService = true
	}
	if o.noMDNS {
		cfg.MDNS = false
	}
	if o.labAddrs {
		node.UseLabAddressing()
	}
	if o.apiAddr != "" {
		cfg.API = o.apiAddr
	}
	if o.metricsAddr != "" {
		cfg.Metrics = o.metricsAddr
	}
}

// checkLoopback refuses an API address that is not a loopback IP with a
// port: the API over TCP is for this machine only.
func checkLoopback(flag, addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return userErrorf("%s %s: want HOST:PORT", flag, addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return userErrorf("%s %s: the API listens only on loopback (127.0.0.1, [::1] or localhost)", flag, addr)
	}
	return nil
}
