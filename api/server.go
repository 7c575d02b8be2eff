package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/mdlayher/vsock"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/net/netutil"
)

// ServerOptions bound what clients can hold of the server.
type ServerOptions struct {
	// ReadTimeout bounds reading a whole request, headers and body, so a
	// client trickling its body cannot hold a connection forever.
	ReadTimeout time.Duration
	// IdleTimeout closes keep-alive connections without a request.
	IdleTimeout time.Duration
	Logger      *slog.Logger
}

// maxHeaderTime bounds reading the headers, within ReadTimeout.
const maxHeaderTime = 30 * time.Second

// NewServer returns the HTTP server of the sidecar. It sets no write
// timeout: exports stream for as long as they take.
func NewServer(h http.Handler, o ServerOptions) *http.Server {
	header := maxHeaderTime
	if o.ReadTimeout > 0 {
		header = min(header, o.ReadTimeout)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: header, ReadTimeout: o.ReadTimeout, IdleTimeout: o.IdleTimeout}
	if o.Logger != nil {
		srv.ErrorLog = slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn)
	}
	return srv
}

// Listen opens the listeners flags name, as web.ListenAndServe does (TCP,
// vsock:// or systemd sockets), each accepting at most maxConns connections
// at a time (0: no bound); further clients wait in the kernel's backlog.
// Serve them with web.ServeMultiple.
func Listen(flags *web.FlagConfig, maxConns int) ([]net.Listener, error) {
	var listeners []net.Listener
	if flags.WebSystemdSocket != nil && *flags.WebSystemdSocket {
		ls, err := activation.Listeners()
		if err != nil {
			return nil, err
		}
		if len(ls) == 0 {
			return nil, errors.New("no socket activation file descriptors found")
		}
		listeners = ls
	} else {
		for _, address := range *flags.WebListenAddresses {
			l, err := listen(address)
			if err != nil {
				for _, l := range listeners {
					l.Close()
				}
				return nil, err
			}
			listeners = append(listeners, l)
		}
	}
	if maxConns > 0 {
		for i, l := range listeners {
			listeners[i] = netutil.LimitListener(l, maxConns)
		}
	}
	return listeners, nil
}

func listen(address string) (net.Listener, error) {
	if !strings.HasPrefix(address, "vsock://") {
		return net.Listen("tcp", address)
	}
	u, err := url.Parse(address)
	if err != nil {
		return nil, err
	}
	_, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", address, err)
	}
	p, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", address, err)
	}
	return vsock.Listen(uint32(p), nil)
}
