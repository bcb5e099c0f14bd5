/* cloudmixer from C: records 2 s offline (30 frames at 15 fps, a 440 Hz tone), lending the
 * frames without copies, and checks the result from the events. Built and run by `make test`:
 *
 *   cc -std=c11 examples/c/record.c -Icapi/include -Ltarget/debug -lcloudmixer_capi -lm
 *   ./a.out OUT_DIR
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cloudmixer.h"

#define W 320
#define H 240
#define FRAMES 30

static atomic_int released;

/* called once per frame, when no mixer uses its planes any more */
static void release_frame(void *opaque) {
    free(opaque);
    atomic_fetch_add(&released, 1);
}

static int fail(const char *what, int code) {
    fprintf(stderr, "FAIL %s: code %d: %s\n", what, code, cm_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "out";
    const char *cfg =
        "{\"mode\":0,\"videoFileCfg\":{\"svrPathName\":\"/c/rec.mp4\",\"vWidth\":320,"
        "\"vHeight\":240,\"vFps\":15,\"layoutConfig\":[{\"type\":0,\"left\":0,\"top\":0,"
        "\"width\":320,\"height\":240,\"param\":{\"camid\":\"u1.0\"}}]}}";
    int32_t err = 0;

    /* a bad config is refused with the vendor's parameter error and a message naming the field */
    cm_mixer *bad = cm_mixer_create("{\"videoFileCfg\":{\"vWidth\":-1}}", dir, 0, &err);
    if (bad != NULL || err != CM_PARAM_ERR || strstr(cm_last_error(), "videoFileCfg") == NULL)
        return fail("a bad config is refused", err);

    cm_mixer *m = cm_mixer_create(cfg, dir, 0, &err);
    if (m == NULL) return fail("create", err);

    int16_t tone[1600]; /* 1/30 s of 48 kHz mono */
    for (int n = 0; n < FRAMES; n++) {
        /* one allocation per frame: Y, then U, then V; lent, freed by release_frame */
        uint8_t *buf = malloc(W * H * 3 / 2);
        memset(buf, 41 + n * 6, W * H);
        memset(buf + W * H, 110, W * H / 4);
        memset(buf + W * H * 5 / 4, 240, W * H / 4);
        cm_video_frame f = {
            .format = CM_I420, .width = W, .height = H,
            .planes = {buf, buf + W * H, buf + W * H * 5 / 4},
            .strides = {W, W / 2, W / 2},
            .color = CM_COLOR_AUTO, .capture_us = -1,
            .release = release_frame, .opaque = buf,
        };
        int32_t rc = cm_mixer_push_video(m, "u1.0", &f);
        if (rc != CM_OK) return fail("push_video", rc);
        for (int i = 0; i < 1600; i++)
            tone[i] = (int16_t)(8000 * sin(2 * 3.14159265358979 * 440 * (n * 1600 + i) / 48000.0));
        rc = cm_mixer_push_audio(m, "u1", tone, 1600, 48000, 1, -1);
        if (rc != CM_OK) return fail("push_audio", rc);
        rc = cm_mixer_advance_frames(m, (uint64_t)n + 1);
        if (rc != CM_OK) return fail("advance", rc);
    }
    int32_t rc = cm_mixer_update_content(m, "{\"videoFileCfg\":{\"layoutConfig\":[]}}");
    if (rc != CM_OK) return fail("update_content", rc);
    rc = cm_mixer_update_content(m, "{\"videoFileCfg\":{\"vWidth\":640}}");
    if (rc != CM_PARAM_ERR) return fail("a bad update is refused", rc);

    char *stats = cm_mixer_stats_json(m);
    if (stats == NULL || strstr(stats, "\"ticks\":30") == NULL) return fail(stats ? stats : "stats", 0);
    cm_string_free(stats);

    rc = cm_mixer_stop(m);
    if (rc != CM_OK) return fail("stop", rc);
    rc = cm_mixer_wait(m, 30000);
    if (rc != CM_OK) return fail("wait", rc);

    /* the events, as the vendor's JSON: the file's final output info comes before NULL */
    int stopped = 0, null_seen = 0;
    char *ev;
    while ((ev = cm_mixer_next_event(m, 1000)) != NULL) {
        if (strstr(ev, "\"outputInfoChanged\"") && strstr(ev, "\"state\":2") &&
            strstr(ev, "\"duration\":2000"))
            stopped = 1;
        if (strstr(ev, "\"stateChanged\"") && strstr(ev, "\"state\":0")) null_seen = 1;
        cm_string_free(ev);
    }
    if (!stopped || !null_seen) return fail("events: final output info and NULL", 0);

    rc = cm_mixer_destroy(m);
    if (rc != CM_OK) return fail("destroy", rc);
    if (atomic_load(&released) != FRAMES) {
        fprintf(stderr, "FAIL released %d of %d frames\n", atomic_load(&released), FRAMES);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/c/rec.mp4", dir);
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size < 1000) return fail("the recording exists", 0);
    printf("ok: %s, %lld bytes, %d frames lent and released once each\n", path,
           (long long)st.st_size, FRAMES);
    return 0;
}
