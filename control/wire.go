package control

import (
	"bufio"
	"errors"
	"io"
	"sync"

	"github.com/unmap-dev/unmap/proto"
)

// wire is the one control stream of a connection: framed messages in
// both directions. Writes from several goroutines are serialised; reads
// belong to one goroutine.
type wire struct {
	r      *bufio.Reader
	maxLen int

	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func newWire(rw io.ReadWriter, maxLen int) *wire {
	return &wire{r: bufio.NewReaderSize(rw, 4096), w: rw, maxLen: maxLen}
}

func (w *wire) send(m proto.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, err := proto.AppendMessage(w.buf[:0], m)
	if err != nil {
		return err
	}
	w.buf = b
	_, err = w.w.Write(b)
	return err
}

// write writes frames already encoded (a session's queue, sendqueue.go).
func (w *wire) write(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.w.Write(b)
	return err
}

// recv reads the next message, skipping advisory types this version does
// not know (skipped counts them).
func (w *wire) recv(skipped func()) (proto.Message, error) {
	for {
		m, err := proto.ReadMessage(w.r, w.maxLen)
		var ut *proto.UnknownTypeError
		if errors.As(err, &ut) && ut.Type.Advisory() {
			skipped()
			continue
		}
		return m, err
	}
}
