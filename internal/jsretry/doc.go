// Package jsretry repeats JetStream requests that a cluster cannot answer
// for a moment: when the node leading a stream is lost, the survivors take
// seconds to notice and elect a new leader, and meanwhile a request finds no
// responder or no answer. The model registry and `model compare` use it.
package jsretry
