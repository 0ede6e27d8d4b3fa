// C side of package vpx: the libvpx calls that cgo cannot make directly (variadic controls,
// unions) and the loops that should not cross the cgo boundary per row or per packet. Everything
// here lives in C memory; Go pointers passed in are only read during the call.
#ifndef RENDERMESH_VPX_SHIM_H
#define RENDERMESH_VPX_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <vpx/vp8cx.h>
#include <vpx/vp8dx.h>
#include <vpx/vpx_decoder.h>
#include <vpx/vpx_encoder.h>

typedef struct {
  int width, height, fps, bitrate_kbps, threads, cpu_used, kf_interval, drop_thresh;
} rm_enc_params;

typedef struct {
  vpx_codec_ctx_t codec;
  vpx_codec_enc_cfg_t cfg;
  vpx_image_t *img;
  int inited;
  int init_w, init_h; /* the size the codec was initialised with */
  uint8_t *buf;       /* the last frame's packets, concatenated */
  size_t len, cap;
  int keyframe;
} rm_enc;

rm_enc *rm_enc_new(void);
vpx_codec_err_t rm_enc_init(rm_enc *e, const rm_enc_params *p);
void rm_enc_destroy(rm_enc *e);
void rm_enc_free(rm_enc *e);
vpx_codec_err_t rm_enc_encode(rm_enc *e, const uint8_t *y, int ystride, const uint8_t *u,
                              const uint8_t *v, int cstride, int64_t pts, int force_kf);
vpx_codec_err_t rm_enc_set_bitrate(rm_enc *e, unsigned int kbps);
vpx_codec_err_t rm_enc_resize(rm_enc *e, int w, int h);
vpx_codec_err_t rm_enc_set_roi(rm_enc *e, const uint8_t *map, unsigned int rows,
                               unsigned int cols, int delta_q);
vpx_codec_err_t rm_enc_clear_roi(rm_enc *e);
const char *rm_enc_error(rm_enc *e);
const char *rm_enc_error_detail(rm_enc *e);

typedef struct {
  vpx_codec_ctx_t codec;
  int inited;
  uint8_t *buf; /* input copy, padded */
  size_t cap;
  vpx_image_t *img; /* the last decoded image, owned by libvpx until the next decode */
} rm_dec;

rm_dec *rm_dec_new(void);
vpx_codec_err_t rm_dec_init(rm_dec *d);
vpx_codec_err_t rm_dec_decode(rm_dec *d, const uint8_t *data, size_t n);
void rm_dec_copy(rm_dec *d, uint8_t *y, int ystride, uint8_t *u, uint8_t *v, int cstride);
void rm_dec_free(rm_dec *d);
const char *rm_dec_error(rm_dec *d);
const char *rm_dec_error_detail(rm_dec *d);

#endif
