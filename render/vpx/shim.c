#include "shim.h"

#include <stdlib.h>
#include <string.h>

rm_enc *rm_enc_new(void) { return calloc(1, sizeof(rm_enc)); }

static int token_partitions(int threads) {
  if (threads >= 8) return VP8_EIGHT_TOKENPARTITION;
  if (threads >= 4) return VP8_FOUR_TOKENPARTITION;
  if (threads >= 2) return VP8_TWO_TOKENPARTITION;
  return VP8_ONE_TOKENPARTITION;
}

vpx_codec_err_t rm_enc_init(rm_enc *e, const rm_enc_params *p) {
  vpx_codec_err_t err;
  vpx_codec_enc_cfg_t *c = &e->cfg;

  err = vpx_codec_enc_config_default(vpx_codec_vp8_cx(), c, 0);
  if (err != VPX_CODEC_OK) return err;
  c->g_w = p->width;
  c->g_h = p->height;
  c->g_timebase.num = 1;
  c->g_timebase.den = p->fps;
  c->g_threads = p->threads;
  c->g_pass = VPX_RC_ONE_PASS;
  c->g_lag_in_frames = 0; /* no look-ahead: a frame comes out of the call that takes it in */
  c->g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
  c->rc_end_usage = VPX_CBR;
  c->rc_target_bitrate = p->bitrate_kbps;
  c->rc_min_quantizer = 4;
  c->rc_max_quantizer = 56;
  c->rc_undershoot_pct = 100;
  c->rc_overshoot_pct = 15;
  c->rc_buf_sz = 1000;
  c->rc_buf_initial_sz = 500;
  c->rc_buf_optimal_sz = 600;
  c->rc_dropframe_thresh = p->drop_thresh;
  c->rc_resize_allowed = 0;
  c->kf_mode = VPX_KF_AUTO;
  c->kf_min_dist = 0;
  c->kf_max_dist = p->kf_interval;

  err = vpx_codec_enc_init(&e->codec, vpx_codec_vp8_cx(), c, 0);
  if (err != VPX_CODEC_OK) return err;
  e->inited = 1;
  e->init_w = p->width;
  e->init_h = p->height;

  /* Negative: a fixed speed. A positive value makes VP8 pick its speed from measured encode
   * times, so the output would depend on how busy the machine is. */
#define CTRL(id, v)                                   \
  do {                                                \
    err = vpx_codec_control(&e->codec, id, v);        \
    if (err != VPX_CODEC_OK) return err;              \
  } while (0)
  CTRL(VP8E_SET_CPUUSED, -p->cpu_used);
  CTRL(VP8E_SET_STATIC_THRESHOLD, 0);
  CTRL(VP8E_SET_NOISE_SENSITIVITY, 0);
  CTRL(VP8E_SET_TOKEN_PARTITIONS, token_partitions(p->threads));
  /* Cap a keyframe at 30 frames' worth of bits per second of frame rate (WebRTC's rule:
   * optimal buffer 600 ms * 0.5 * fps / 10 percent), so one keyframe cannot stall the stream. */
  CTRL(VP8E_SET_MAX_INTRA_BITRATE_PCT, (unsigned int)(600 / 2 * p->fps / 10) < 300 ? 300u : (unsigned int)(600 / 2 * p->fps / 10));
#undef CTRL

  e->img = vpx_img_alloc(NULL, VPX_IMG_FMT_I420, p->width, p->height, 16);
  if (e->img == NULL) return VPX_CODEC_MEM_ERROR;
  return VPX_CODEC_OK;
}

void rm_enc_destroy(rm_enc *e) {
  if (e->inited) vpx_codec_destroy(&e->codec);
  e->inited = 0;
  if (e->img) vpx_img_free(e->img);
  e->img = NULL;
}

void rm_enc_free(rm_enc *e) {
  if (e == NULL) return;
  rm_enc_destroy(e);
  free(e->buf);
  free(e);
}

static void copy_plane(uint8_t *dst, int dstride, const uint8_t *src, int sstride, int w, int h) {
  for (int y = 0; y < h; y++) memcpy(dst + (size_t)y * dstride, src + (size_t)y * sstride, w);
}

static int append(rm_enc *e, const void *p, size_t n) {
  if (e->len + n > e->cap) {
    size_t cap = e->cap ? e->cap : 64 * 1024;
    while (cap < e->len + n) cap *= 2;
    uint8_t *b = realloc(e->buf, cap);
    if (b == NULL) return 0;
    e->buf = b;
    e->cap = cap;
  }
  memcpy(e->buf + e->len, p, n);
  e->len += n;
  return 1;
}

vpx_codec_err_t rm_enc_encode(rm_enc *e, const uint8_t *y, int ystride, const uint8_t *u,
                              const uint8_t *v, int cstride, int64_t pts, int force_kf) {
  vpx_image_t *img = e->img;
  int w = (int)img->d_w, h = (int)img->d_h;
  int cw = (w + 1) / 2, ch = (h + 1) / 2;
  copy_plane(img->planes[VPX_PLANE_Y], img->stride[VPX_PLANE_Y], y, ystride, w, h);
  copy_plane(img->planes[VPX_PLANE_U], img->stride[VPX_PLANE_U], u, cstride, cw, ch);
  copy_plane(img->planes[VPX_PLANE_V], img->stride[VPX_PLANE_V], v, cstride, cw, ch);

  e->len = 0;
  e->keyframe = 0;
  vpx_codec_err_t err = vpx_codec_encode(&e->codec, img, pts, 1,
                                         force_kf ? VPX_EFLAG_FORCE_KF : 0, VPX_DL_REALTIME);
  if (err != VPX_CODEC_OK) return err;
  vpx_codec_iter_t iter = NULL;
  const vpx_codec_cx_pkt_t *pkt;
  while ((pkt = vpx_codec_get_cx_data(&e->codec, &iter)) != NULL) {
    if (pkt->kind != VPX_CODEC_CX_FRAME_PKT) continue;
    if (!append(e, pkt->data.frame.buf, pkt->data.frame.sz)) return VPX_CODEC_MEM_ERROR;
    if (pkt->data.frame.flags & VPX_FRAME_IS_KEY) e->keyframe = 1;
  }
  return VPX_CODEC_OK;
}

vpx_codec_err_t rm_enc_set_bitrate(rm_enc *e, unsigned int kbps) {
  e->cfg.rc_target_bitrate = kbps;
  return vpx_codec_enc_config_set(&e->codec, &e->cfg);
}

/* rm_enc_resize changes the size in place. VP8 accepts that only up to the size it was
 * initialised with; the caller re-initialises otherwise. */
vpx_codec_err_t rm_enc_resize(rm_enc *e, int w, int h) {
  vpx_image_t *img = vpx_img_alloc(NULL, VPX_IMG_FMT_I420, w, h, 16);
  if (img == NULL) return VPX_CODEC_MEM_ERROR;
  vpx_codec_enc_cfg_t c = e->cfg;
  c.g_w = w;
  c.g_h = h;
  vpx_codec_err_t err = vpx_codec_enc_config_set(&e->codec, &c);
  if (err != VPX_CODEC_OK) {
    vpx_img_free(img);
    return err;
  }
  e->cfg = c;
  vpx_img_free(e->img);
  e->img = img;
  return VPX_CODEC_OK;
}

vpx_codec_err_t rm_enc_set_roi(rm_enc *e, const uint8_t *map, unsigned int rows,
                               unsigned int cols, int delta_q) {
  vpx_roi_map_t roi;
  memset(&roi, 0, sizeof roi);
  /* A copy in C memory: libvpx must never see Go memory after the call. */
  roi.roi_map = malloc((size_t)rows * cols);
  if (roi.roi_map == NULL) return VPX_CODEC_MEM_ERROR;
  memcpy(roi.roi_map, map, (size_t)rows * cols);
  roi.enabled = 1;
  roi.rows = rows;
  roi.cols = cols;
  roi.delta_q[1] = delta_q;
  vpx_codec_err_t err = vpx_codec_control(&e->codec, VP8E_SET_ROI_MAP, &roi);
  free(roi.roi_map);
  return err;
}

vpx_codec_err_t rm_enc_clear_roi(rm_enc *e) {
  vpx_roi_map_t roi;
  memset(&roi, 0, sizeof roi);
  roi.rows = (e->cfg.g_h + 15) / 16;
  roi.cols = (e->cfg.g_w + 15) / 16;
  /* No map and no deltas: VP8 turns segmentation off. */
  return vpx_codec_control(&e->codec, VP8E_SET_ROI_MAP, &roi);
}

const char *rm_enc_error(rm_enc *e) { return vpx_codec_error(&e->codec); }
const char *rm_enc_error_detail(rm_enc *e) { return vpx_codec_error_detail(&e->codec); }

/* Decoder. */

rm_dec *rm_dec_new(void) { return calloc(1, sizeof(rm_dec)); }

vpx_codec_err_t rm_dec_init(rm_dec *d) {
  vpx_codec_dec_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.threads = 1;
  vpx_codec_err_t err = vpx_codec_dec_init(&d->codec, vpx_codec_vp8_dx(), &cfg, 0);
  if (err == VPX_CODEC_OK) d->inited = 1;
  return err;
}

#define RM_DEC_PAD 64

vpx_codec_err_t rm_dec_decode(rm_dec *d, const uint8_t *data, size_t n) {
  d->img = NULL;
  if (n + RM_DEC_PAD > d->cap) {
    size_t cap = d->cap ? d->cap : 64 * 1024;
    while (cap < n + RM_DEC_PAD) cap *= 2;
    uint8_t *b = realloc(d->buf, cap);
    if (b == NULL) return VPX_CODEC_MEM_ERROR;
    d->buf = b;
    d->cap = cap;
  }
  memcpy(d->buf, data, n);
  memset(d->buf + n, 0, RM_DEC_PAD);
  vpx_codec_err_t err = vpx_codec_decode(&d->codec, d->buf, (unsigned int)n, NULL, 0);
  if (err != VPX_CODEC_OK) return err;
  vpx_codec_iter_t iter = NULL;
  vpx_image_t *img;
  while ((img = vpx_codec_get_frame(&d->codec, &iter)) != NULL) d->img = img;
  return VPX_CODEC_OK;
}

void rm_dec_copy(rm_dec *d, uint8_t *y, int ystride, uint8_t *u, uint8_t *v, int cstride) {
  vpx_image_t *img = d->img;
  int w = (int)img->d_w, h = (int)img->d_h;
  int cw = (w + 1) / 2, ch = (h + 1) / 2;
  copy_plane(y, ystride, img->planes[VPX_PLANE_Y], img->stride[VPX_PLANE_Y], w, h);
  copy_plane(u, cstride, img->planes[VPX_PLANE_U], img->stride[VPX_PLANE_U], cw, ch);
  copy_plane(v, cstride, img->planes[VPX_PLANE_V], img->stride[VPX_PLANE_V], cw, ch);
}

void rm_dec_free(rm_dec *d) {
  if (d == NULL) return;
  if (d->inited) vpx_codec_destroy(&d->codec);
  free(d->buf);
  free(d);
}

const char *rm_dec_error(rm_dec *d) { return vpx_codec_error(&d->codec); }
const char *rm_dec_error_detail(rm_dec *d) { return vpx_codec_error_detail(&d->codec); }
