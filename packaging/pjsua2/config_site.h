/*
 * pi-intercom's pjproject configuration (copied to pjlib/include/pj/config_site.h by build.sh).
 * Every value here is part of the build cache key: change it and the next build starts from scratch.
 */

/* Calls at once. pjproject's default is 4, and pjsua silently lowers uaConfig.maxCalls to it: a parallel ring
 * group's legs 5-8 then fail with PJ_ETOOMANY (70010). The daemon allows sip.max_calls up to 12
 * (daemon/config.py MAX_CALLS_LIMIT); 32 leaves room for inbound calls refused while a ring group is out. */
#define PJSUA_MAX_CALLS 32

/* Socket keys of the ioqueue. Each call that gets a slot costs two (RTP + RTCP), and a closed socket's key is
 * only reusable PJ_IOQUEUE_KEY_FREE_DELAY (500 ms) later: with the default 64, an INVITE flood (60 INVITEs
 * 2 ms apart) exhausted the keys and pjlib asserted. build.sh also selects the epoll ioqueue (--enable-epoll),
 * which has no FD_SETSIZE (1024) ceiling, so this can grow without select()'s limits. */
#define PJ_IOQUEUE_MAX_HANDLES 1024

/* SIP over TCP/TLS: a longer listen() backlog so a burst of connections is queued rather than reset, and an
 * incoming connection that sends no valid SIP message within 10 s is closed (default: kept until the
 * 600 s server idle time), so idle connections cannot pin the transports. */
#define PJSIP_TCP_TRANSPORT_BACKLOG 64
#define PJSIP_TLS_TRANSPORT_BACKLOG 64
#define PJSIP_TRANSPORT_SERVER_IDLE_TIME_FIRST 10

/* No video: a door panel speaks and listens (configure --disable-video too). */
#define PJMEDIA_HAS_VIDEO 0

/* SRTP (bundled libsrtp) for sip.srtp; TLS comes from OpenSSL, detected by configure. */
#define PJMEDIA_HAS_SRTP 1

/* The codecs we offer: G.711 (PCMU/PCMA, always built), G.722 (wideband, bundled), Opus (Debian's libopus,
 * detected by configure). Others that configure would build are left out to keep the SDP offer short
 * (configure --disable-* flags in build.sh). */
#define PJMEDIA_HAS_G722_CODEC 1

/* The Speex codec is not offered, but libspeex is still built: the Speex echo canceller (ecOptions 0) lives
 * there. (configure's --disable-speex-codec would drop the library from the link as well.) */
#define PJMEDIA_HAS_SPEEX_CODEC 0

/* The Speex echo canceller's preprocessor (echo_speex.c runs speex_preprocess on what it sends). pjmedia makes
 * its AGC and denoiser compile-time constants (on by default) and ignores PJMEDIA_ECHO_USE_GAIN_CONTROLLER /
 * _NOISE_SUPPRESSOR for Speex. echo_speex.c assigns these macros to a variable inside speex_aec_create(), where
 * its `options` argument (EpConfig.medConfig.ecOptions) is in scope, and uses them nowhere else: so they read
 * the flags at run time, and [audio] gain_control / noise_suppression mean the same for Speex as for WebRTC.
 * Measured (docs/audio.md): the AGC, on by default, sent the visitor 9-11 dB lower. The denoiser also applies
 * Speex's residual-echo suppression (preprocess.c: with denoise off no spectral gain is applied at all), so
 * turning noise_suppression off costs most of Speex's echo cancellation. */
#define PJMEDIA_SPEEX_AEC_USE_AGC ((options & PJMEDIA_ECHO_USE_GAIN_CONTROLLER) != 0)
#define PJMEDIA_SPEEX_AEC_USE_DENOISE ((options & PJMEDIA_ECHO_USE_NOISE_SUPPRESSOR) != 0)

/* Speex's echo suppression while its filter learns (speex-early-residual.patch, applied by build.sh). Stock
 * Speex hands its preprocessor no residual echo until the filter counts as adapted, so the first 1-2 s of the
 * resident's speech went back to the resident nearly uncancelled (~0 dB in the first second, 9-24 dB in the
 * second: convergence 2-6 s, target < 2 s). With the patch the preprocessor suppresses at least
 * SPEEX_AEC_EARLY_GAIN times the loudest far-end spectrum of the filter's span until the filter has adapted and
 * for SPEEX_AEC_EARLY_HOLD_MS of far-end speech after that; and again for SPEEX_AEC_REARM_MS whenever pjmedia's
 * playback/capture pairing slips a frame (xruns: the filter must relearn the shifted echo, the single seconds
 * that dipped to 0-20 dB). A visitor speaking over the resident in those windows is attenuated more: the gain
 * (0.25, an echo 6 dB below the far end, the bench's path) kept it within 3 dB where 1.0 did not (-4.3 dB in a
 * real call; docs/audio.md). SPEEX_AEC_EARLY_HOLD_MS -1 turns it all off (stock Speex); SPEEX_AEC_REARM_MS 0
 * only the re-arming. */
#define SPEEX_AEC_EARLY_HOLD_MS 1000
#define SPEEX_AEC_REARM_MS 1000
#define SPEEX_AEC_EARLY_GAIN 0.25f

/* Speex's residual-echo floors in its preprocessor (speex-echo-suppress.patch, applied by build.sh): how far
 * below the microphone the residual echo may be pushed while the visitor is silent, and while the visitor
 * speaks (dB; Speex's defaults 40 and 15). 60: offline, on a call's recorded microphone and speaker, the first
 * three seconds of the resident's speech came back 58-60 dB lower instead of 39-41 dB and the double-talk
 * seconds were unchanged (docs/audio.md); the active floor stays Speex's, which is what keeps a visitor
 * speaking over the resident within 3 dB. */
#define PJMEDIA_SPEEX_AEC_ECHO_SUPPRESS_DB 60
#define PJMEDIA_SPEEX_AEC_ECHO_SUPPRESS_ACTIVE_DB 15

/* pjmedia's two adaptive buffers on the talk path shed drift, not jitter (delaybuf-drift-only.patch,
 * jbuf-drift-only.patch, applied by build.sh; docs/audio.md "The buffers shed drift, not jitter"). Stock, the
 * delay buffer between the card's capture and the conference sheds 10-30 ms by WSOLA whenever a burst of
 * captured frames exceeds the run length it learnt over the last 2 s, and makes a frame up when the playback
 * side's next burst finds it short; the jitter buffer's static discard drops the frame it concealed for a late
 * packet again 1.5-2 s later: pairs of steps in what each side hears. Patched, each sheds only delay that every
 * GET of a whole *_DRIFT_WINDOW_MS left unused beyond one frame, once that reached *_DRIFT_SURPLUS_MS (drift,
 * or a stall's backlog), and then all but *_DRIFT_KEEP_MS of it (the margin for the next burst): the jitter
 * buffer in one cut, the delay buffer gradually (below).
 * A delay gained on an underflow is kept (latency) instead of being shed and lost again. *_DRIFT_WINDOW_MS 0:
 * stock. The jitter buffer's part acts on jitter_discard = "static" (our default) only. */
#define PJMEDIA_DELAY_BUF_DRIFT_WINDOW_MS 10000
#define PJMEDIA_DELAY_BUF_DRIFT_SURPLUS_MS 40
#define PJMEDIA_DELAY_BUF_DRIFT_KEEP_MS 30
/* ... and the delay buffer sheds that surplus by resampling, PJMEDIA_DELAY_BUF_DRIFT_SHED_PPM samples in a
 * million (0.2 %: 3.5 cents of pitch, ~15 s for 30 ms), not in one WSOLA cut: drift compensation with no step
 * in what the resident hears. 0: one cut. A shed costs no step, so the delay buffer's surplus threshold is
 * lower than the jitter buffer's (40 ms: at least 10 ms to shed down to the 30 ms kept). */
#define PJMEDIA_DELAY_BUF_DRIFT_SHED_PPM 2000
#define PJMEDIA_JBUF_DRIFT_WINDOW_MS 10000
#define PJMEDIA_JBUF_DRIFT_SURPLUS_MS 60
#define PJMEDIA_JBUF_DRIFT_KEEP_MS 30
