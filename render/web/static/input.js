// Input helpers: pure functions, no DOM, so node can test them (render/web/web_test.go).

// KEY_CODE is what the wire format accepts as a KeyboardEvent.code (render/input.Event.Code).
export const KEY_CODE = /^[A-Za-z0-9]{1,32}$/;

// contentPoint maps a point on the page (clientX, clientY) to the video's picture: 0..1 each way
// from its top-left corner, values outside meaning off the picture. rect is the element's box
// (getBoundingClientRect), videoWidth × videoHeight the intrinsic size, fit the CSS object-fit
// (the picture centred, as object-position's default): "contain" letterboxes, "cover" crops,
// "fill" stretches. null while the video has no size.
export function contentPoint(rect, videoWidth, videoHeight, fit, clientX, clientY) {
  if (!videoWidth || !videoHeight || !rect.width || !rect.height) return null;
  let sx = rect.width / videoWidth;
  let sy = rect.height / videoHeight;
  switch (fit) {
    case 'fill':
      break;
    case 'cover':
      sx = sy = Math.max(sx, sy);
      break;
    case 'none':
      sx = sy = 1;
      break;
    case 'scale-down':
      sx = sy = Math.min(1, sx, sy);
      break;
    default: // contain
      sx = sy = Math.min(sx, sy);
  }
  const w = videoWidth * sx;
  const h = videoHeight * sy;
  return { x: (clientX - (rect.left + (rect.width - w) / 2)) / w, y: (clientY - (rect.top + (rect.height - h) / 2)) / h };
}
