package monitor

import (
	"context"
	"hash/maphash"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// job is one decoded input waiting for its lane.
type job struct {
	in   input
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
	ev   event
	errs *errorLog
}

// lanes runs the inputs' ledger work concurrently. Each input goes to the
// lane of its (source, record_id), shared by all inputs, so two inputs for
// the same record are handled one after the other, in delivery order, while
// inputs for different records overlap their JetStream round trips. (Several
// processes still agree through the pending entry's compare-and-set.)
type lanes struct {
	m     *Monitor
	ctx   context.Context // the work context: ends at the shutdown deadline
	seed  maphash.Seed
	chans []chan job
	quit  chan struct{} // closed once no more inputs are dispatched
	wg    sync.WaitGroup
}

// laneQueue is each lane's queue length: enough to keep a lane busy while
// its consume loop delivers, short so that one slow record does not hold
// many others.
const laneQueue = 4

func (m *Monitor) startLanes(workCtx context.Context) *lanes {
	l := &lanes{m: m, ctx: workCtx, seed: maphash.MakeSeed(), quit: make(chan struct{})}
	l.chans = make([]chan job, m.cfg.Consumer.Lanes)
	for i := range l.chans {
		ch := make(chan job, laneQueue)
		l.chans[i] = ch
		l.wg.Go(func() { l.run(ch) })
	}
	return l
}

// dispatch queues j on its lane, waiting while the lane is full. After stop
// it returns without handling j: the message stays unacked and is
// redelivered (to this process's successor).
func (l *lanes) dispatch(j job) {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(j.ev.Source)
	h.WriteByte(0)
	h.WriteString(j.ev.RecordID)
	ch := l.chans[h.Sum64()%uint64(len(l.chans))]
	select {
	case ch <- j:
	case <-l.quit:
	}
}

func (l *lanes) run(ch chan job) {
	for {
		select {
		case j := <-ch:
			l.m.finish(j.in, j.msg, j.meta, j.errs, l.m.record(l.ctx, j.ev, j.meta.Sequence.Stream))
		case <-l.quit:
			// Whatever is queued is finished (or, past the shutdown
			// deadline, fails fast and is NAKed).
			for {
				select {
				case j := <-ch:
					l.m.finish(j.in, j.msg, j.meta, j.errs, l.m.record(l.ctx, j.ev, j.meta.Sequence.Stream))
				default:
					return
				}
			}
		}
	}
}

// stop ends the lanes once the consume loops have stopped dispatching, and
// waits for the queued inputs to be finished.
func (l *lanes) stop() {
	close(l.quit)
	l.wg.Wait()
}
