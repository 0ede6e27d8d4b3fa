// The frame stamp: how a frame says when it was rendered. Pure functions, no DOM, so node can
// test them (render/web/web_test.go does).
//
// Contract (the container writes it, this reads it): in the video's intrinsic resolution, a grid
// of 64 columns × 2 rows of square blocks of side B = max(4, floor(videoWidth / 64)) pixels,
// starting at (0, 0). A block is bit 1 when its luma (0.299 R + 0.587 G + 0.114 B) is ≥ 128,
// else 0.
//   row 0, columns 0..63:  render time, unix microseconds, uint64, most significant bit first
//   row 1, columns 0..31:  frame number, uint32, MSB first
//   row 1, columns 32..63: CRC-32 (IEEE, as zlib and PNG) of the 12 bytes
//                          [render time, 8 bytes big-endian || frame number, 4 bytes big-endian]

export const STAMP_COLS = 64;
export const STAMP_ROWS = 2;

// blockSize is the side of a stamp block for a video videoWidth pixels wide.
export function blockSize(videoWidth) {
  return Math.max(4, Math.floor(videoWidth / STAMP_COLS));
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

// crc32 is the IEEE CRC-32 of bytes (an array or typed array of 0..255).
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// blockBit reads one block from RGBA pixels (width pixels a row): the mean luma of its central
// half, so a little ringing at the edges of a block does not flip it.
function blockBit(rgba, width, b, row, col) {
  const inner = Math.max(1, b >> 1);
  const x0 = col * b + ((b - inner) >> 1);
  const y0 = row * b + ((b - inner) >> 1);
  let sum = 0;
  for (let y = y0; y < y0 + inner; y++) {
    let i = (y * width + x0) * 4;
    for (let x = 0; x < inner; x++, i += 4) {
      sum += 0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2];
    }
  }
  return sum / (inner * inner) >= 128 ? 1 : 0;
}

// decodeStamp reads the stamp from RGBA pixels (rgba, width pixels a row, at least 2·b rows),
// blocks of side b. It returns {ok, renderUs (BigInt), frame}; ok is false when the CRC does not
// match (no stamp, or a damaged one).
export function decodeStamp(rgba, width, b) {
  let renderUs = 0n;
  for (let col = 0; col < 64; col++) renderUs = (renderUs << 1n) | BigInt(blockBit(rgba, width, b, 0, col));
  let frame = 0;
  let crc = 0;
  for (let col = 0; col < 32; col++) {
    frame = ((frame << 1) | blockBit(rgba, width, b, 1, col)) >>> 0;
    crc = ((crc << 1) | blockBit(rgba, width, b, 1, 32 + col)) >>> 0;
  }
  const msg = new Uint8Array(12);
  const view = new DataView(msg.buffer);
  view.setBigUint64(0, renderUs);
  view.setUint32(8, frame);
  return { ok: crc32(msg) === crc, renderUs, frame };
}
