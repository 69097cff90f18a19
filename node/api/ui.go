package api

import (
	"context"
	"net/http"
)

// App is the web app that the TCP listener serves besides the API; node/ui
// has it. The listener applies its rules (guardTCP) to the app's paths as
// to the API's.
type App interface {
	// ServeHTTP answers every request over TCP whose path is not the
	// API's (/v1/..., /healthz, /metrics, /openapi.json): pages, assets,
	// login and logout.
	http.Handler
	// Authorized reports whether r carries a live session of the app; the
	// API serves such a request as one with the bearer token.
	Authorized(r *http.Request) bool
	// Login returns the path and query of a new one-time login link.
	Login() (string, error)
}

// UILogin is the answer to POST /v1/ui/login.
type UILogin struct {
	// URL opens the web app and logs in, once.
	URL string `json:"url"`
}

func (s *Server) uiRoutes() []route {
	return []route{
		{"POST /v1/ui/login", false, s.handle(s.uiLogin)},
	}
}

// uiLogin starts the TCP listener unless it runs (at Config.UIListen,
// or a free port when that is taken) and answers a login link for it.
func (s *Server) uiLogin(r *http.Request) (any, error) {
	if s.cfg.App == nil {
		return nil, Errorf(CodeUnavailable, "this daemon serves no web app")
	}
	addr, err := s.ListenTCP(s.cfg.UIListen, true)
	if err != nil {
		return nil, Errorf(CodeUnavailable, "start the web app's listener: %v", err)
	}
	path, err := s.cfg.App.Login()
	if err != nil {
		return nil, err
	}
	return UILogin{URL: "http://" + addr.String() + path}, nil
}

// UILogin calls POST /v1/ui/login: the daemon starts serving the web app
// if it does not yet, and answers a one-time login link.
func (c *Client) UILogin(ctx context.Context) (UILogin, error) {
	var res UILogin
	err := c.do(ctx, http.MethodPost, "/v1/ui/login", nil, &res)
	return res, err
}
