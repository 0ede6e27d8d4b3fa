// Package p2p is rendermesh's networking layer: the libp2p host (TCP and QUIC, noise, yamux,
// identify, ping) with explicit resource limits and a connection manager; the private Kademlia DHT
// /rendermesh/kad/1.0.0 holding signed container records and capability provider records; gossipsub
// with strict signing, peer scoring and topic validators; and helpers for versioned stream protocols.
//
// Everything signed that crosses the network is a libp2p signed envelope whose payload is a protobuf
// message from p2p/pb, with one domain string per kind of object (see Kind). Roles never see libp2p
// types: Net implements the small interfaces they declare (publish a record, provide a capability,
// find providers, fetch a record, publish and receive heartbeats).
package p2p
