// Package session holds what container and consumer share about a running session's usage: how it
// is metered, and where the co-signed receipts are kept.
//
//   - meter.go: the metering rule. A session costs its price per 15-minute unit, counted by the
//     minute: every started minute counts (Usage). The container issues cumulative UsageReceipts
//     with NextReceipt, one per minute and a final one; the consumer verifies each with CheckReceipt
//     before it countersigns. Both are pure functions of the session and a time the caller supplies.
//   - log.go: Log, a durable append-only file of opaque records (the co-signed receipt envelopes)
//     that settlement reads back. Append returns only once the record is on disk; a record torn by
//     a crash is cut away when the log is opened again, and corruption anywhere else is an error.
package session
