// Package simnet will run hundreds to thousands of real nodes in one process over simulated links,
// reproducibly, with scenarios and reports. It is empty in this release; the simnet issue builds it.
package simnet
