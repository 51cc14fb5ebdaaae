// sse-go-client subscribes to a gateway stream with a Go SSE library, as a Go service would,
// for tests/e2e/test_go_clients.py. It prints one JSON line per message the library hands
// over ({"id", "event", "data", "retry"}) and a {"note"} line for each reconnect, and exits 0
// after -events messages with data, 3 when -seconds pass first.
//
//	sse-go-client -lib r3labs|go-sse -url URL -events N [-seconds S] [-buffer BYTES]
//
// -buffer raises the library's event size limit (0: its default of 64 KB). Both libraries
// return nil when the server ends a stream, where a browser reconnects: as the README advises,
// r3labs/sse's Subscribe is called again after the retry: delay of the opening message, and
// go-sse's Connect (which keeps retry: to itself) after -again milliseconds plus up to a
// quarter more.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	r3labs "github.com/r3labs/sse/v2"
	gosse "github.com/tmaxmax/go-sse"
)

type printer struct {
	mu     sync.Mutex
	out    *json.Encoder
	wanted int
	got    int
}

func (p *printer) message(id, event, data, retry string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out.Encode(map[string]string{"id": id, "event": event, "data": data, "retry": retry})
	if data != "" {
		p.got++
		if p.got >= p.wanted {
			os.Exit(0)
		}
	}
}

func (p *printer) note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out.Encode(map[string]string{"note": fmt.Sprintf(format, args...)})
}

func main() {
	lib := flag.String("lib", "r3labs", "r3labs or go-sse")
	url := flag.String("url", "", "the stream's URL")
	events := flag.Int("events", 1, "messages with data to wait for")
	seconds := flag.Float64("seconds", 30, "give up after this long (exit 3)")
	buffer := flag.Int("buffer", 0, "largest event the library may read (0: its default)")
	again := flag.Int("again", 3000, "go-sse: milliseconds before connecting again")
	flag.Parse()
	p := &printer{out: json.NewEncoder(os.Stdout), wanted: *events}
	time.AfterFunc(time.Duration(*seconds*float64(time.Second)), func() {
		p.mu.Lock()
		got := p.got
		p.mu.Unlock()
		p.note("timed out after %d messages with data", got)
		os.Exit(3)
	})
	var err error
	switch *lib {
	case "r3labs":
		err = withR3labs(*url, *buffer, p)
	case "go-sse":
		err = withGoSSE(*url, *buffer, *again, p)
	default:
		err = fmt.Errorf("unknown -lib %q", *lib)
	}
	p.note("gave up: %v", err)
	os.Exit(1)
}

func withR3labs(url string, buffer int, p *printer) error {
	var options []func(*r3labs.Client)
	if buffer > 0 {
		options = append(options, r3labs.ClientMaxBufferSize(buffer))
	}
	client := r3labs.NewClient(url, options...)
	client.ReconnectNotify = func(err error, next time.Duration) {
		p.note("reconnecting in %v after: %v", next, err)
	}
	retry := time.Second
	for {
		err := client.SubscribeRaw(func(msg *r3labs.Event) {
			if ms, err := strconv.Atoi(string(msg.Retry)); err == nil {
				retry = time.Duration(ms) * time.Millisecond
			}
			p.message(string(msg.ID), string(msg.Event), string(msg.Data), string(msg.Retry))
		})
		if err != nil {
			return err
		}
		p.note("stream ended: subscribing again in %v", retry)
		time.Sleep(retry)
	}
}

func withGoSSE(url string, buffer, againMs int, p *printer) error {
	request, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &gosse.Client{OnRetry: func(err error, next time.Duration) {
		p.note("reconnecting in %v after: %v", next, err)
	}}
	connection := client.NewConnection(request)
	if buffer > 0 {
		connection.Buffer(nil, buffer)
	}
	connection.SubscribeToAll(func(event gosse.Event) {
		p.message(event.LastEventID, event.Type, event.Data, "")
	})
	for {
		if err := connection.Connect(); err != nil {
			return err
		}
		wait := time.Duration(againMs+rand.Intn(againMs/4+1)) * time.Millisecond
		p.note("stream ended: connecting again in %v", wait)
		time.Sleep(wait)
	}
}
