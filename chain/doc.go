// Package chain will hold the settlement layer: Solidity contracts and their generated bindings, the
// chain client (embedded simulated backend by default, any EVM RPC otherwise) and settlement. It is
// empty in this release.
package chain
