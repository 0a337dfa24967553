// Image pixels <-> page (client) pixels for an image drawn letterboxed in an element
// (CSS object-fit: contain): scaled by the largest factor that fits, centred.
// Image pixels: x = column, y = row, origin at the image's top-left corner (msg/BoundingBox2D.msg).

/** The image's placement in a box of boxW x boxH: {scale, x, y} (offsets of its top-left corner). */
export function fitRect(boxW, boxH, imgW, imgH) {
  const scale = Math.min(boxW / imgW, boxH / imgH);
  return { scale, x: (boxW - imgW * scale) / 2, y: (boxH - imgH * scale) / 2 };
}

/** Client point -> image pixel {x, y}, or null outside the image. rect: the element's DOMRect. */
export function pageToImage(clientX, clientY, rect, imgW, imgH) {
  const fit = fitRect(rect.width, rect.height, imgW, imgH);
  const x = (clientX - rect.left - fit.x) / fit.scale;
  const y = (clientY - rect.top - fit.y) / fit.scale;
  return x >= 0 && y >= 0 && x < imgW && y < imgH ? { x, y } : null;
}

/** Client point -> image pixel clamped into the image (for drags that leave it). */
export function pageToImageClamped(clientX, clientY, rect, imgW, imgH) {
  const fit = fitRect(rect.width, rect.height, imgW, imgH);
  const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
  return { x: clamp((clientX - rect.left - fit.x) / fit.scale, imgW),
           y: clamp((clientY - rect.top - fit.y) / fit.scale, imgH) };
}

/** Image pixel -> client point. */
export function imageToPage(x, y, rect, imgW, imgH) {
  const fit = fitRect(rect.width, rect.height, imgW, imgH);
  return { x: rect.left + fit.x + x * fit.scale, y: rect.top + fit.y + y * fit.scale };
}

/** A colour per track id, the same for an id whatever else is shown: [r, g, b]. */
export function colourOf(id) {
  const h = (id * 137.508) % 360, s = 0.75, l = 0.55;
  const k = (n) => (n + h / 30) % 12, a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [f(0), f(8), f(4)].map((v) => Math.round(v * 255));
}

/** Paint a COCO RLE crop (column-major runs, background first) into RGBA `pixels` of width `imgW`. */
export function paintRle(pixels, imgW, imgH, mask, rgb, alpha) {
  let k = 0, on = false;
  for (const run of mask.rle) {
    if (on) {
      for (let i = k; i < k + run; i++) {
        const col = mask.x + Math.floor(i / mask.h), row = mask.y + (i % mask.h);
        if (col >= imgW || row >= imgH) continue;
        const p = (row * imgW + col) * 4;
        pixels[p] = Math.round(pixels[p] * (1 - alpha) + rgb[0] * alpha);
        pixels[p + 1] = Math.round(pixels[p + 1] * (1 - alpha) + rgb[1] * alpha);
        pixels[p + 2] = Math.round(pixels[p + 2] * (1 - alpha) + rgb[2] * alpha);
      }
    }
    k += run;
    on = !on;
  }
}
