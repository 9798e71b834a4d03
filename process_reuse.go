package kcl

// Process makes a task for every record, and a keyQueue for every key that
// had none waiting: the dispatcher keeps those it is done with for the
// next ones, so that a busy run allocates neither per record. Only
// touched by the dispatcher.
//
//   - A task is kept once it left its key's queue (advance): no worker,
//     batch or heap holds it any more. It is cleared first, so that no
//     record's data stays reachable through it.
//   - A keyQueue is kept once its last record left it and its key left
//     processor.keys; its array is kept too, unless a backlog grew it.
//   - At most tasksMax tasks and reuseMax keyQueues are kept.
type reuse struct {
	tasks []*task
	keys  []*keyQueue
}

// reuseMax bounds the keyQueues reuse keeps, and tasksMax the tasks: as
// many as a shard's backlog swings by, a quarter of the default
// MaxUnackedPerShard (a shard fetches again once a quarter of its limit is
// acked, waitForRoom), so that a busy run allocates no task. A task is
// about 300 bytes: at most about 750 KB kept.
const (
	reuseMax = 256
	tasksMax = defaultMaxUnacked / 4
)

// keyArrayMax is the largest keyQueue array reuse keeps: a key's backlog
// may grow one to MaxUnackedPerShard.
const keyArrayMax = 64

func (r *reuse) task() *task {
	if n := len(r.tasks); n > 0 {
		t := r.tasks[n-1]
		r.tasks[n-1] = nil
		r.tasks = r.tasks[:n-1]
		return t
	}
	return &task{}
}

func (r *reuse) putTask(t *task) {
	if len(r.tasks) < tasksMax {
		*t = task{}
		r.tasks = append(r.tasks, t)
	}
}

func (r *reuse) key(key string) *keyQueue {
	if n := len(r.keys); n > 0 {
		k := r.keys[n-1]
		r.keys[n-1] = nil
		r.keys = r.keys[:n-1]
		k.key = key
		return k
	}
	return &keyQueue{key: key}
}

// putKey keeps k, whose queue is empty and which left processor.keys.
func (r *reuse) putKey(k *keyQueue) {
	if len(r.keys) >= reuseMax {
		return
	}
	tasks := k.tasks // empty: its array is cleared
	if cap(tasks.all) > keyArrayMax {
		tasks = queue[*task]{}
	}
	*k = keyQueue{tasks: tasks}
	r.keys = append(r.keys, k)
}
