package kcl

// chanLock is a mutex for a lock held across a call to the lease table (a
// lease's writes, a heartbeat's retries). A goroutine waiting for it waits
// on a channel, not on a sync.Mutex: testing/synctest counts a channel wait,
// not a mutex wait, as blocked, so the simulation's virtual clock can move
// while the holder waits out a slow table call. Use newChanLock; the zero
// value is not usable.
type chanLock chan struct{}

func newChanLock() chanLock { return make(chanLock, 1) }

func (l chanLock) Lock()   { l <- struct{}{} }
func (l chanLock) Unlock() { <-l }
