package main

// One SSE stream's state and books, HTTP/1.1 chunked decoding and the event reader: the
// same semantics as bench/loadgen.py's Client, dechunk() and Worker.events().

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"strings"
)

// TagScale: a tagged event's "run" is run * TagScale + tag (tag < TagScale).
const TagScale = 100_000

const (
	Connecting = iota
	Headers
	Stream
	Closed
)

type span struct{ start, end int64 } // [start, end) skipped over

type Client struct {
	fd       int
	state    int
	head     []byte
	chunked  bool
	raw      []byte // a partial chunk-size line (or CRLF) kept for the next read
	left     int64  // >0 bytes left in the HTTP chunk, 0 size line next, -1 CRLF next
	sse      []byte // text after the last blank line
	sampled  bool
	next     int64 // the next sequence number expected
	recv     int64 // distinct events of this run received
	dups     int64
	gaps     []span
	late     map[int64]struct{} // gap members that arrived after all
	stale    int64              // events of another run
	lastT    int64              // send time (us) of the newest event received
	started  float64
	readyAt  float64
	eof      bool
	hasTag   bool
	tag      int64
	run      int64 // the "run" value this client's events carry (-1: not counting)
	request  []byte
	expect   int64 // events this client must get (-1: not known yet)
	group    int64 // 0: the scenario's streams, 1: the storm's
	anchor   bool  // books start at the first event of the run received
	first    int64 // that event's seq (anchored clients)
	inClient bool  // in Worker.clients (not dropped, not closed by the server)
	badChunk bool  // a chunk-size line that is not hexadecimal
}

func newClient(fd int, sampled bool) *Client {
	return &Client{fd: fd, state: Connecting, sampled: sampled, run: -1, expect: -1, first: -1}
}

func (c *Client) missing(total int64) int64 {
	missing := total - c.next
	if missing < 0 {
		missing = 0
	}
	if len(c.gaps) > 0 {
		for _, g := range c.gaps {
			missing += g.end - g.start
		}
		missing -= int64(len(c.late))
	}
	return missing
}

func (c *Client) inGap(seq int64) bool {
	for _, g := range c.gaps {
		if g.start <= seq && seq < g.end {
			return true
		}
	}
	return false
}

var crlf = []byte("\r\n")

// dechunk undoes HTTP/1.1 chunked transfer coding into out (returned); keeps partial size
// lines in c.raw. ok is false on a size line that is not hexadecimal.
func dechunk(c *Client, data []byte, out []byte) ([]byte, bool) {
	buf := data
	if len(c.raw) > 0 {
		c.raw = append(c.raw, data...)
		buf = c.raw
	}
	i, size := 0, len(buf)
	ok := true
	for i < size {
		if c.left > 0 {
			take := int64(size - i)
			if c.left < take {
				take = c.left
			}
			out = append(out, buf[i:i+int(take)]...)
			i += int(take)
			c.left -= take
			if c.left == 0 {
				c.left = -1
			}
		} else if c.left == -1 {
			if size-i < 2 {
				break
			}
			i += 2
			c.left = 0
		} else {
			j := bytes.Index(buf[i:], crlf)
			if j < 0 {
				break
			}
			j += i
			line := buf[i:j]
			if k := bytes.IndexByte(line, ';'); k >= 0 {
				line = line[:k]
			}
			length := int64(0)
			if text := strings.TrimSpace(string(line)); text != "" {
				n, err := strconv.ParseInt(text, 16, 64)
				if err != nil || n < 0 {
					ok = false
					i = size
					break
				}
				length = n
			}
			i = j + 2
			if length == 0 {
				c.eof = true
				i = size
				break
			}
			c.left = length
		}
	}
	if rest := buf[i:]; len(rest) > 0 {
		c.raw = append([]byte(nil), rest...)
	} else {
		c.raw = c.raw[:0]
	}
	return out, ok
}

// -- the event reader: what the regex "run":\s*(\d+),\s*"seq":\s*(\d+),\s*"t":\s*(\d+) finds --

var runMark = []byte(`"run":`)

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func digits(b []byte, i int) (int64, int, bool) {
	start := i
	var v int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	return v, i, i > start
}

func expectLit(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// nextNumber reads `,\s*<key>\s*(\d+)` at b[i:]: the number after the next key.
func nextNumber(b []byte, i int, key string) (v int64, end int, ok bool) {
	if i, ok = expectLit(b, i, ","); !ok {
		return
	}
	if i, ok = expectLit(b, skipSpace(b, i), key); !ok {
		return
	}
	return digits(b, skipSpace(b, i))
}

// eventAt reads run, seq and t at b[i:] (which starts with "run":); end is past t's digits.
func eventAt(b []byte, i int) (run, seq, t int64, end int, ok bool) {
	if run, i, ok = digits(b, skipSpace(b, i+len(runMark))); !ok {
		return
	}
	if seq, i, ok = nextNumber(b, i, `"seq":`); !ok {
		return
	}
	if t, i, ok = nextNumber(b, i, `"t":`); !ok {
		return
	}
	return run, seq, t, i, true
}

// events books every event of part (text cut at a blank line). Every event is looked at:
// loadgen.py's fast path (a contiguous chunk accepted by its first and last event) is not
// needed here.
func (w *Worker) events(c *Client, part []byte, now float64) {
	nowUs := int64(now * 1_000_000)
	var received int64
	pos := 0
	for {
		k := bytes.Index(part[pos:], runMark)
		if k < 0 {
			break
		}
		start := pos + k
		run, seq, sent, end, ok := eventAt(part, start)
		if !ok {
			pos = start + 1
			continue
		}
		pos = end
		if run != c.run {
			c.stale++
			continue
		}
		if c.anchor { // a storm stream: its books start here
			c.anchor, c.first, c.next = false, seq, seq
		}
		if seq == c.next {
			c.next++
		} else if seq > c.next {
			if c.gaps == nil {
				c.late = make(map[int64]struct{})
			}
			c.gaps = append(c.gaps, span{c.next, seq})
			c.next = seq + 1
		} else if _, seen := c.late[seq]; len(c.gaps) > 0 && !seen && c.inGap(seq) {
			c.late[seq] = struct{}{}
		} else {
			c.dups++
			continue
		}
		received++
		if sent > c.lastT {
			c.lastT = sent
		}
		if c.sampled && w.ws <= sent && sent <= w.we {
			w.lat = append(w.lat, nowUs-sent)
			w.latSent = append(w.latSent, sent)
		}
	}
	c.recv += received
	if received > 0 {
		w.count(c, received, now, nowUs-c.lastT)
	}
}

func (w *Worker) count(c *Client, n int64, now float64, lagUs int64) {
	w.eventsTotal += n
	w.tickEvents += n
	if lagUs > w.tickMaxlag {
		w.tickMaxlag = lagUs
	}
	if c.group == 0 && float64(w.ws) <= now*1_000_000 && now*1_000_000 <= float64(w.we) {
		w.windowEvents += n
	}
}

// books: loss, duplicates and the rest over clients (open ones and those the server closed),
// the keys of loadgen.books(). An anchored client that never got an event misses all of them.
func books(clients []*Client) map[string]any {
	var held, closedMid, missing, clientsMissing, behind, dups, stale, received, sampled int64
	var firstMin, firstMax *int64
	var startedMin, readyMax *float64
	admit := make([]float64, 0, len(clients))
	for _, c := range clients {
		if c.state == Stream {
			held++
		} else {
			closedMid++
		}
		expect := c.expect
		if expect < 0 {
			expect = 0
		}
		m := c.missing(expect)
		missing += m
		if m != 0 {
			clientsMissing++
		}
		if d := c.expect - c.next; d > 0 {
			behind += d
		}
		dups += c.dups
		stale += c.stale
		received += c.recv
		if c.sampled {
			sampled++
		}
		if c.first >= 0 {
			f := c.first
			if firstMin == nil || f < *firstMin {
				firstMin = &f
			}
			if firstMax == nil || f > *firstMax {
				firstMax = &f
			}
		}
		s, r := c.started, c.readyAt
		if startedMin == nil || s < *startedMin {
			startedMin = &s
		}
		if readyMax == nil || r > *readyMax {
			readyMax = &r
		}
		admit = append(admit, (c.readyAt-c.started)*1000)
	}
	return map[string]any{
		"held": held, "closed_mid": closedMid,
		"missing": missing, "clients_missing": clientsMissing,
		"behind": behind, "dups": dups, "stale": stale, "received": received,
		"sampled_clients": sampled, "clients": len(clients),
		"first_seq_min": firstMin, "first_seq_max": firstMax,
		"started_min": startedMin, "ready_max": readyMax,
		"admit_ms": floatBytes(admit),
	}
}

// floatBytes and intBytes: what array("d"/"q", ...).tobytes() gives on little-endian x86.
func floatBytes(values []float64) []byte {
	out := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(v))
	}
	return out
}

func intBytes(values []int64) []byte {
	out := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(out[8*i:], uint64(v))
	}
	return out
}
