//go:build linux

package mllp

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Case 12: the keep-alive setting reaches the accepted sockets: a period sets
// TCP_KEEPIDLE, zero leaves keep-alive on with the system's period, negative
// turns it off.
func TestListenerCase12KeepAlive(t *testing.T) {
	systemIdle := -1
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_keepalive_time"); err == nil {
		systemIdle, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	for _, tt := range []struct {
		name     string
		period   time.Duration
		wantOn   bool
		wantIdle int // seconds; -1 to not check
	}{
		{"period", 42 * time.Second, true, 42},
		{"system_default", 0, true, systemIdle},
		{"off", -1, false, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewListener(ListenerConfig{Addr: "127.0.0.1:0", KeepAlive: tt.period}, &recorder{t: t}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Listen(); err != nil {
				t.Fatal(err)
			}
			defer l.Shutdown(context.Background())
			c := dialClient(t, l.Addr().String())
			defer c.nc.Close()
			// Accept as Serve does, through the listener's own socket.
			nc, err := l.ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			raw, err := nc.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var on, idle int
			var optErr error
			raw.Control(func(fd uintptr) {
				if on, optErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); optErr != nil {
					return
				}
				idle, optErr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
			})
			if optErr != nil {
				t.Fatal(optErr)
			}
			if (on != 0) != tt.wantOn {
				t.Errorf("SO_KEEPALIVE = %d, want on=%v", on, tt.wantOn)
			}
			if tt.wantIdle >= 0 && idle != tt.wantIdle {
				t.Errorf("TCP_KEEPIDLE = %d s, want %d", idle, tt.wantIdle)
			}
		})
	}
}
