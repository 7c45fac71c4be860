package schemas

// Chunk is one value of a stream, in order from Seq 1.
type Chunk struct {
	Seq      uint64
	Body     []byte
	Raw      bool
	WorkerID string
}

// StreamCall is how a transport drives one streaming request through a pool.
type StreamCall struct {
	// Window is how many chunks may be unacknowledged at once.
	Window int
	// Emit delivers one chunk; it is called from one goroutine, in order. An
	// error cancels the stream.
	Emit func(Chunk) error
	// Acks carries the highest seq the reader has consumed. The transport keeps
	// only the latest value in it.
	Acks chan uint64
}
