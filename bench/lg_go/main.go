// Command lg is bench/loadgen.py in Go: one process, one epoll loop, hundreds of SSE
// clients on raw non-blocking sockets, with the same command protocol and the same books.
//
// Commands come as JSON lines on stdin, the Python tuples as arrays:
//
//	["connect", url, n, sampled, inflight]            -> ["connected", {...}]
//	["connect", url, n, sampled, inflight, group]     (the storm: anchored streams, group 1)
//	["connect_each", url, [[target, [[name, value], ...], tag|null], ...], sampled, inflight]
//	["go", run, window_start, window_end]             -> ["tick", {...}] every 0.5 s
//	["expect", total] / ["expect", total, tags]
//	["finish"]                                        -> ["result", {...}]
//	["quit"]                                          (or the end of stdin)
//
// Answers go to stdout as JSON lines with loadgen.py's keys; its bytes (array("d"/"q")
// .tobytes(): admit_ms, lat, lat_sent) are base64 strings, as encoding/json writes []byte,
// and "groups" has string keys. bench/loadgen_go.py turns them back.
//
// One goroutine does everything, as the Python worker's single thread does: no locks, and
// per event only a scan of the bytes for "run":, "seq": and "t".
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const tickSeconds = 0.5

type pendingStream struct {
	sampled bool
	request []byte
	hasTag  bool
	tag     int64
}

type Worker struct {
	ep    int
	out   *bufio.Writer
	byFd  []*Client // open descriptor -> client (the Python dict's lookup)
	order []*Client // insertion order of the Python dict (compacted lazily)
	gone  []*Client // streams the server closed during the run

	pending      []pendingStream
	pendingAt    int
	inflight     int
	maxInflight  int
	addr         syscall.SockaddrInet4
	run          int64
	ws, we       int64 // the steady window, microseconds
	expect       int64
	connecting   bool
	connectGroup int64
	connStarted  float64
	failed       int64
	failReasons  map[string]int64
	lastReady    float64

	lat          []int64 // latencies (us) of sampled events sent inside the window
	latSent      []int64 // their send times (us)
	windowEvents int64
	eventsTotal  int64
	tickEvents   int64
	tickMaxlag   int64
	closedMid    int64
	closeReasons map[string]int64

	rbuf  []byte // one read buffer for every socket
	dbuf  []byte // dechunked bytes of the current read
	ctl   []byte // partial command line from stdin
	evbuf []syscall.EpollEvent
}

func nowSeconds() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func newWorker() (*Worker, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &Worker{ep: ep, out: bufio.NewWriterSize(os.Stdout, 1<<16), run: -1, expect: -1,
		maxInflight: 100, failReasons: map[string]int64{}, rbuf: make([]byte, 262144),
		evbuf: make([]syscall.EpollEvent, 1024)}
	w.resetCounters()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: 0}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, 0, &ev); err != nil {
		return nil, fmt.Errorf("epoll on stdin: %w", err)
	}
	return w, nil
}

func (w *Worker) resetCounters() {
	w.lat, w.latSent = nil, nil
	w.windowEvents, w.eventsTotal, w.tickEvents, w.tickMaxlag, w.closedMid = 0, 0, 0, 0, 0
	w.closeReasons = map[string]int64{}
}

func (w *Worker) send(kind string, body map[string]any) {
	data, err := json.Marshal([]any{kind, body})
	if err != nil {
		fmt.Fprintf(os.Stderr, "lg: encoding %s: %v\n", kind, err)
		os.Exit(2)
	}
	w.out.Write(data)
	w.out.WriteByte('\n')
	if err := w.out.Flush(); err != nil { // the orchestrator is gone
		os.Exit(0)
	}
}

// clients: the open ones (the Python dict's values), in insertion order.
func (w *Worker) clients() []*Client {
	kept := w.order[:0]
	for _, c := range w.order {
		if c.inClient {
			kept = append(kept, c)
		}
	}
	for i := len(kept); i < len(w.order); i++ {
		w.order[i] = nil
	}
	w.order = kept
	return kept
}

func (w *Worker) addClient(c *Client) {
	for c.fd >= len(w.byFd) {
		w.byFd = append(w.byFd, make([]*Client, len(w.byFd)+1024)...)
	}
	w.byFd[c.fd] = c
	c.inClient = true
	w.order = append(w.order, c)
}

func (w *Worker) removeClient(c *Client) {
	if c.inClient && c.fd < len(w.byFd) && w.byFd[c.fd] == c {
		syscall.EpollCtl(w.ep, syscall.EPOLL_CTL_DEL, c.fd, nil)
		w.byFd[c.fd] = nil
	}
	c.inClient = false
}

// -- connecting -------------------------------------------------------------------------------

type target struct {
	path    string
	headers [][2]string
	hasTag  bool
	tag     int64
}

func (w *Worker) startConnect(rawURL string, n int, sampled int, inflight int,
	targets []target, group int64) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	host := u.Hostname()
	port := 80
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return err
		}
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil {
		ips, err := net.LookupIP(host)
		if err != nil {
			return err
		}
		ip = nil
		for _, x := range ips {
			if x.To4() != nil {
				ip = x
				break
			}
		}
		if ip == nil {
			return fmt.Errorf("no IPv4 address for %s", host)
		}
	}
	w.addr = syscall.SockaddrInet4{Port: port}
	copy(w.addr.Addr[:], ip.To4())
	path := u.EscapedPath()
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	hostHeader := fmt.Sprintf("%s:%d", host, port)
	if targets == nil {
		targets = make([]target, n)
		for i := range targets {
			targets[i] = target{path: path}
		}
	}
	n = len(targets)
	requests := map[string][]byte{}
	// sampled clients spread evenly over the connection order: servers that serve clients in
	// the order they came would otherwise look faster than they are
	w.pending = w.pending[:0]
	w.pendingAt = 0
	for i, t := range targets {
		key := t.path
		for _, h := range t.headers {
			key += "\x00" + h[0] + "\x00" + h[1]
		}
		req, ok := requests[key]
		if !ok {
			req = requestBytes(hostHeader, t.path, t.headers)
			requests[key] = req
		}
		s := (i*sampled)/n < ((i+1)*sampled)/n
		w.pending = append(w.pending, pendingStream{s, req, t.hasTag, t.tag})
	}
	w.maxInflight = inflight
	w.connectGroup = group
	w.connecting = true
	w.connStarted = nowSeconds()
	w.failed = 0
	w.failReasons = map[string]int64{}
	w.lastReady = 0
	w.fill()
	return nil
}

func requestBytes(host, target string, headers [][2]string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"+
		"Cache-Control: no-cache\r\nUser-Agent: sse-bench\r\n", target, host)
	for _, h := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// fillBatch bounds the sockets one fill() opens: the rest wait for the next turn of the loop,
// so the streams already open are read in between (5,000 at once held their events ~50 ms,
// counted as the server's latency).
const fillBatch = 256

// hasRoom: a pending stream, and room in flight for it.
func (w *Worker) hasRoom() bool {
	return w.pendingAt < len(w.pending) && w.inflight < w.maxInflight
}

func (w *Worker) fill() {
	for opened := 0; opened < fillBatch && w.hasRoom(); opened++ {
		p := w.pending[w.pendingAt]
		w.pending[w.pendingAt] = pendingStream{}
		w.pendingAt++
		fd, err := syscall.Socket(syscall.AF_INET,
			syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil { // loadgen.py would raise here (e.g. EMFILE): counted as a failure
			w.failed++
			w.failReasons["socket: "+errnoName(err)]++
			continue
		}
		c := newClient(fd, p.sampled)
		c.request, c.hasTag, c.tag = p.request, p.hasTag, p.tag
		c.group = w.connectGroup
		c.anchor = c.group > 0
		if w.run >= 0 { // opened during a run: counts from its first event on
			c.run = w.run
			if c.hasTag {
				c.run = w.run*TagScale + c.tag
			}
		}
		c.started = nowSeconds()
		w.addClient(c)
		w.inflight++
		ev := syscall.EpollEvent{Events: syscall.EPOLLOUT, Fd: int32(fd)}
		syscall.EpollCtl(w.ep, syscall.EPOLL_CTL_ADD, fd, &ev)
		err = syscall.Connect(fd, &w.addr)
		if err != nil && err != syscall.EINPROGRESS {
			w.fail(c, "connect: "+errnoName(err))
		}
	}
	if w.pendingAt >= len(w.pending) {
		w.pending, w.pendingAt = w.pending[:0], 0
	}
	w.checkConnected()
}

func (w *Worker) checkConnected() {
	if !w.connecting || w.pendingAt < len(w.pending) || w.inflight != 0 {
		return
	}
	w.connecting = false
	var admit []float64
	ok := 0
	for _, c := range w.clients() {
		if c.state == Stream && c.group == w.connectGroup {
			ok++
			admit = append(admit, (c.readyAt-c.started)*1000)
		}
	}
	w.send("connected", map[string]any{
		"ok": ok, "failed": w.failed, "reasons": w.failReasons,
		"started": w.connStarted, "last_ready": w.lastReady, "admit_ms": floatBytes(admit),
	})
}

func (w *Worker) fail(c *Client, reason string) {
	w.failed++
	w.failReasons[reason]++
	w.drop(c)
}

func (w *Worker) drop(c *Client) {
	if c.state == Connecting || c.state == Headers {
		w.inflight--
	}
	c.state = Closed
	w.removeClient(c)
	syscall.SetsockoptLinger(c.fd, syscall.SOL_SOCKET, syscall.SO_LINGER,
		&syscall.Linger{Onoff: 1, Linger: 0})
	syscall.Close(c.fd)
}

func (w *Worker) onWritable(c *Client) {
	if e, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil {
		w.fail(c, "connect: "+errnoName(err))
		return
	} else if e != 0 {
		w.fail(c, "connect: "+errnoName(syscall.Errno(e)))
		return
	}
	if err := syscall.Sendto(c.fd, c.request, syscall.MSG_NOSIGNAL, nil); err != nil {
		w.fail(c, "send: "+exceptionName(err))
		return
	}
	c.state = Headers
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.fd)}
	syscall.EpollCtl(w.ep, syscall.EPOLL_CTL_MOD, c.fd, &ev)
}

var headEnd = []byte("\r\n\r\n")

func (w *Worker) onHeaders(c *Client, data []byte, now float64) {
	c.head = append(c.head, data...)
	end := bytes.Index(c.head, headEnd)
	if end < 0 {
		if len(c.head) > 65536 {
			w.fail(c, "headers too long")
		}
		return
	}
	head := string(c.head[:end])
	body := append([]byte(nil), c.head[end+4:]...)
	c.head = nil
	status := "?"
	if strings.Contains(head, " ") {
		status = strings.SplitN(head, " ", 3)[1]
	}
	if status != "200" {
		w.fail(c, "HTTP "+status)
		return
	}
	c.chunked = strings.Contains(strings.ToLower(head), "transfer-encoding: chunked")
	c.state = Stream
	c.readyAt = now
	w.inflight--
	if now > w.lastReady {
		w.lastReady = now
	}
	if len(body) > 0 {
		w.onBody(c, body, now)
	}
	if w.connecting {
		w.fill()
	}
}

// -- streaming ----------------------------------------------------------------------------------

var blankLine = []byte("\n\n")

func (w *Worker) onBody(c *Client, data []byte, now float64) {
	if c.chunked {
		var ok bool
		w.dbuf, ok = dechunk(c, data, w.dbuf[:0])
		data = w.dbuf
		if !ok {
			c.eof = true // closed by onReadable: loadgen.py would raise on such a size line
			c.badChunk = true
		}
	}
	inSSE := len(c.sse) > 0
	buf := data
	if inSSE {
		c.sse = append(c.sse, data...)
		buf = c.sse
	}
	end := bytes.LastIndex(buf, blankLine)
	if end < 0 {
		if !inSSE {
			c.sse = append(c.sse[:0], buf...)
		}
		return
	}
	if c.run >= 0 {
		w.events(c, buf[:end+2], now)
	}
	rest := buf[end+2:]
	if inSSE {
		c.sse = c.sse[:copy(c.sse, rest)]
	} else {
		c.sse = append(c.sse[:0], rest...)
	}
}

func (w *Worker) onReadable(c *Client, now float64) {
	n, err := readRaw(c.fd, w.rbuf)
	if err != nil {
		if err == syscall.EAGAIN || err == syscall.EINTR {
			return
		}
		w.closed(c, exceptionName(err))
		return
	}
	if n == 0 {
		w.closed(c, "EOF")
		return
	}
	if c.state == Headers {
		w.onHeaders(c, w.rbuf[:n], now)
	} else {
		w.onBody(c, w.rbuf[:n], now)
	}
	if c.eof {
		reason := "end of stream"
		if c.badChunk {
			reason = "bad chunk size"
		}
		w.closed(c, reason)
	}
}

func (w *Worker) closed(c *Client, reason string) {
	if c.state == Stream {
		w.closedMid++
		w.closeReasons[reason]++
		c.state = Closed // kept in the books: its events count, the rest are missing
		w.removeClient(c)
		w.gone = append(w.gone, c)
		syscall.Close(c.fd)
		c.sse, c.raw, c.head, c.request = nil, nil, nil, nil
	} else if c.state != Closed {
		w.fail(c, "closed before headers: "+reason)
		if w.connecting {
			w.fill()
		}
	}
}

func (w *Worker) goRun(run int64, ws, we float64) {
	w.run, w.ws, w.we = run, int64(ws*1e6), int64(we*1e6)
	for _, c := range w.clients() {
		c.run = run
		if c.hasTag {
			c.run = run*TagScale + c.tag
		}
	}
}

func (w *Worker) setExpect(total int64, tags int64) {
	w.expect = total
	for _, list := range [][]*Client{w.clients(), w.gone} {
		for _, c := range list {
			if !c.hasTag || tags == 0 {
				c.expect = total
			} else {
				c.expect = total / tags
				if c.tag < total%tags {
					c.expect++
				}
			}
		}
	}
}

// -- reporting ----------------------------------------------------------------------------------

func (w *Worker) tick(now float64) {
	nowUs := int64(now * 1_000_000)
	var open, complete, waiting, worst int64
	if w.expect < 0 {
		complete = -1
	}
	for _, c := range w.clients() {
		if c.state != Stream {
			continue
		}
		open++
		if c.lastT != 0 {
			if lag := nowUs - c.lastT; lag > worst {
				worst = lag
			}
		} else {
			waiting++
		}
		if w.expect >= 0 && c.next >= c.expect && len(c.gaps) == 0 {
			complete++
		}
	}
	w.send("tick", map[string]any{
		"events": w.tickEvents, "maxlag_us": w.tickMaxlag, "worst_lag_us": worst,
		"open": open, "closed": w.closedMid, "complete": complete, "waiting": waiting,
	})
	w.tickEvents = 0
	w.tickMaxlag = 0
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6 +
		float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
}

func (w *Worker) result() map[string]any {
	open := w.clients()
	var all []*Client
	for _, c := range open {
		if c.state == Stream {
			all = append(all, c)
		}
	}
	all = append(all, w.gone...)
	byGroup := map[int64][]*Client{}
	var groups []int64
	for _, c := range all {
		if _, seen := byGroup[c.group]; !seen && c.group != 0 {
			groups = append(groups, c.group)
		}
		byGroup[c.group] = append(byGroup[c.group], c)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i] < groups[j] })
	out := books(byGroup[0])
	out["close_reasons"] = w.closeReasons
	groupBooks := map[string]any{}
	for _, g := range groups {
		groupBooks[strconv.FormatInt(g, 10)] = books(byGroup[g])
	}
	out["groups"] = groupBooks
	out["window_events"] = w.windowEvents
	out["events_total"] = w.eventsTotal
	out["lat"] = intBytes(w.lat)
	out["lat_sent"] = intBytes(w.latSent)
	var tcpConnecting, awaiting int
	for _, c := range open {
		switch c.state {
		case Connecting:
			tcpConnecting++
		case Headers:
			awaiting++
		}
	}
	reasons := map[string]int64{}
	for k, v := range w.failReasons {
		reasons[k] = v
	}
	// a connect still going (a storm cut short): where its streams are stuck
	out["unsettled"] = map[string]any{
		"not_started": len(w.pending) - w.pendingAt, "tcp_connecting": tcpConnecting,
		"awaiting_headers": awaiting, "failed": w.failed, "reasons": reasons,
	}
	out["cpu"] = cpuSeconds()
	for _, c := range open {
		w.drop(c)
	}
	w.order = w.order[:0]
	w.gone = nil
	w.pending, w.pendingAt = w.pending[:0], 0 // a storm cut short: no connect after the books
	w.connecting = false
	w.inflight = 0
	w.run, w.expect = -1, -1
	w.ws, w.we = 0, 0
	w.resetCounters()
	return out
}

// -- the loop -----------------------------------------------------------------------------------

func (w *Worker) serve() {
	nextTick := 0.0
	for {
		timeout := 500
		if w.connecting && w.hasRoom() { // more sockets to open: look at what is ready, then open them
			timeout = 0
		} else if w.run >= 0 {
			timeout = 100
		}
		n, err := epollWait(w.ep, w.evbuf, timeout)
		if err != nil && err != syscall.EINTR {
			fmt.Fprintf(os.Stderr, "lg: epoll_wait: %v\n", err)
			os.Exit(2)
		}
		now := nowSeconds()
		for i := 0; i < n; i++ {
			fd := int(w.evbuf[i].Fd)
			mask := w.evbuf[i].Events
			if fd == 0 {
				if !w.readCommands() {
					return
				}
				continue
			}
			if fd >= len(w.byFd) || w.byFd[fd] == nil {
				continue
			}
			c := w.byFd[fd]
			if c.state == Connecting {
				if mask&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
					w.onWritable(c)
				}
			} else {
				w.onReadable(c, now)
			}
		}
		if w.connecting {
			w.fill()
		}
		if w.run >= 0 && now >= nextTick {
			nextTick = now + tickSeconds
			w.tick(now)
		}
	}
}

// readCommands reads what stdin has and runs every complete line; false: quit.
func (w *Worker) readCommands() bool {
	var buf [65536]byte
	n, err := syscall.Read(0, buf[:])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return true
	}
	if err != nil || n == 0 {
		return false // the orchestrator is gone
	}
	w.ctl = append(w.ctl, buf[:n]...)
	for {
		i := bytes.IndexByte(w.ctl, '\n')
		if i < 0 {
			return true
		}
		line := w.ctl[:i]
		more := w.command(line)
		w.ctl = w.ctl[:copy(w.ctl, w.ctl[i+1:])]
		if !more {
			return false
		}
	}
}

func (w *Worker) command(line []byte) bool {
	var msg []json.RawMessage
	if len(bytes.TrimSpace(line)) == 0 {
		return true
	}
	if err := json.Unmarshal(line, &msg); err != nil || len(msg) == 0 {
		fmt.Fprintf(os.Stderr, "lg: bad command %.200q\n", line)
		return true
	}
	var kind string
	json.Unmarshal(msg[0], &kind)
	args := msg[1:]
	bad := func(err error) bool {
		fmt.Fprintf(os.Stderr, "lg: %s: %v\n", kind, err)
		return true
	}
	switch {
	case kind == "connect" && (len(args) == 4 || len(args) == 5):
		var u string
		var n, sampled, inflight int
		var group int64
		if err := decodeAll(args[:4], &u, &n, &sampled, &inflight); err != nil {
			return bad(err)
		}
		if len(args) == 5 {
			if err := json.Unmarshal(args[4], &group); err != nil {
				return bad(err)
			}
		}
		if err := w.startConnect(u, n, sampled, inflight, nil, group); err != nil {
			return bad(err)
		}
	case kind == "connect_each" && len(args) == 4:
		var u string
		var raw [][]json.RawMessage
		var sampled, inflight int
		if err := decodeAll(args, &u, &raw, &sampled, &inflight); err != nil {
			return bad(err)
		}
		targets := make([]target, 0, len(raw))
		for _, t := range raw {
			if len(t) != 3 {
				return bad(fmt.Errorf("a target is (path, headers, tag), got %d items", len(t)))
			}
			var x target
			var tag *int64
			if err := decodeAll(t, &x.path, &x.headers, &tag); err != nil {
				return bad(err)
			}
			if tag != nil {
				x.hasTag, x.tag = true, *tag
			}
			targets = append(targets, x)
		}
		if err := w.startConnect(u, len(targets), sampled, inflight, targets, 0); err != nil {
			return bad(err)
		}
	case kind == "go" && len(args) == 3:
		var run int64
		var ws, we float64
		if err := decodeAll(args, &run, &ws, &we); err != nil {
			return bad(err)
		}
		w.goRun(run, ws, we)
	case kind == "expect" && (len(args) == 1 || len(args) == 2):
		var total, tags int64
		if err := json.Unmarshal(args[0], &total); err != nil {
			return bad(err)
		}
		if len(args) == 2 {
			if err := json.Unmarshal(args[1], &tags); err != nil {
				return bad(err)
			}
		}
		w.setExpect(total, tags)
	case kind == "finish" && len(args) == 0:
		w.send("result", w.result())
	case kind == "quit" && len(args) == 0:
		return false
	}
	return true
}

func decodeAll(raw []json.RawMessage, into ...any) error {
	for i, x := range into {
		if err := json.Unmarshal(raw[i], x); err != nil {
			return fmt.Errorf("argument %d: %w", i+1, err)
		}
	}
	return nil
}

func main() {
	w, err := newWorker()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lg: %v\n", err)
		os.Exit(2)
	}
	w.serve()
}
