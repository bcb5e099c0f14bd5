// cloudmixer from C++: two cameras side by side, recorded offline for 2 s (30 frames at 15 fps),
// each frame lent without a copy and freed by its owner when the mixer lets go. The C ABI
// wrapped the C++ way: an RAII handle, exceptions carrying cm_last_error(), std::string events.
// Built and run by `make test`:
//
//   c++ -std=c++17 examples/cpp/record.cpp -Icapi/include -Ltarget/debug -lcloudmixer_capi
//   ./a.out OUT_DIR
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "cloudmixer.h"

namespace {

std::atomic<int> released{0};

// A frame's planes, owned here and lent to the mixer until it calls release().
struct Picture {
    std::vector<uint8_t> bytes;  // Y, then U, then V
    static void release(void *self) {
        delete static_cast<Picture *>(self);
        released.fetch_add(1);
    }
};

[[noreturn]] void fail(const std::string &what, int code) {
    throw std::runtime_error(what + ": code " + std::to_string(code) + ": " + cm_last_error());
}

void check(const char *what, int32_t code) {
    if (code != CM_OK) fail(what, code);
}

// One recording; destroyed (stopped and finalised) when it goes out of scope.
class Mixer {
  public:
    Mixer(const std::string &config, const std::string &storage) {
        int32_t err = CM_OK;
        m_.reset(cm_mixer_create(config.c_str(), storage.c_str(), 0, &err));
        if (!m_) fail("create", err);
    }
    // a solid I420 picture of w x h, lent (the mixer frees it through Picture::release)
    void push_solid(const char *camid, uint32_t w, uint32_t h, uint8_t y, uint8_t u, uint8_t v) {
        auto *p = new Picture{std::vector<uint8_t>(w * h * 3 / 2, y)};
        std::fill(p->bytes.begin() + w * h, p->bytes.begin() + w * h * 5 / 4, u);
        std::fill(p->bytes.begin() + w * h * 5 / 4, p->bytes.end(), v);
        uint8_t *b = p->bytes.data();
        cm_video_frame f{};
        f.format = CM_I420;
        f.width = w;
        f.height = h;
        f.planes[0] = b;
        f.planes[1] = b + w * h;
        f.planes[2] = b + w * h * 5 / 4;
        f.strides[0] = w;
        f.strides[1] = w / 2;
        f.strides[2] = w / 2;
        f.color = CM_COLOR_BT709;
        f.capture_us = -1;
        f.release = &Picture::release;
        f.opaque = p;
        // on failure the mixer has already called release: nothing leaks
        check("push_video", cm_mixer_push_video(m_.get(), camid, &f));
    }
    void advance_frames(uint64_t total) { check("advance", cm_mixer_advance_frames(m_.get(), total)); }
    std::string stats() { return take(cm_mixer_stats_json(m_.get())); }
    void stop_and_wait() {
        check("stop", cm_mixer_stop(m_.get()));
        check("wait", cm_mixer_wait(m_.get(), 30000));
    }
    // the next event as the vendor's JSON; empty when the stream has ended
    std::string next_event(uint64_t timeout_ms) { return take(cm_mixer_next_event(m_.get(), timeout_ms)); }

  private:
    static std::string take(char *s) {
        std::string out = s ? s : "";
        cm_string_free(s);
        return out;
    }
    struct Destroy {
        void operator()(cm_mixer *m) const { cm_mixer_destroy(m); }
    };
    std::unique_ptr<cm_mixer, Destroy> m_;
};

}  // namespace

int main(int argc, char **argv) {
    const std::string dir = argc > 1 ? argv[1] : "out";
    const std::string cfg = R"({"mode":0,"videoFileCfg":{"svrPathName":"/cpp/rec.mp4",
        "vWidth":640,"vHeight":240,"vFps":15,"layoutConfig":[
        {"type":0,"left":0,"top":0,"width":320,"height":240,"param":{"camid":"u1.0"}},
        {"type":0,"left":320,"top":0,"width":320,"height":240,"param":{"camid":"u2.0"}}]}})";
    constexpr int frames = 30;
    try {
        try {
            Mixer bad(R"({"videoFileCfg":{"vHeight":-1}})", dir);
            std::fprintf(stderr, "FAIL a bad config was accepted\n");
            return 1;
        } catch (const std::runtime_error &e) {
            if (std::string(e.what()).find("videoFileCfg") == std::string::npos) throw;
        }
        bool stopped = false, null_seen = false;
        {
            Mixer m(cfg, dir);
            for (int n = 0; n < frames; n++) {
                m.push_solid("u1.0", 320, 240, static_cast<uint8_t>(60 + n * 4), 90, 240);
                m.push_solid("u2.0", 160, 120, 180, static_cast<uint8_t>(40 + n * 4), 120);
                m.advance_frames(n + 1);
            }
            if (m.stats().find("\"ticks\":30") == std::string::npos) fail("stats: " + m.stats(), 0);
            m.stop_and_wait();
            for (std::string ev; !(ev = m.next_event(1000)).empty();) {
                if (ev.find("\"outputInfoChanged\"") != std::string::npos &&
                    ev.find("\"state\":2") != std::string::npos &&
                    ev.find("\"duration\":2000") != std::string::npos)
                    stopped = true;
                if (ev.find("\"stateChanged\"") != std::string::npos &&
                    ev.find("\"state\":0") != std::string::npos)
                    null_seen = true;
            }
        }  // destroyed here
        if (!stopped || !null_seen) fail("events: final output info and NULL", 0);
        if (released.load() != 2 * frames)
            fail("released " + std::to_string(released.load()) + " of " + std::to_string(2 * frames) + " frames", 0);
        const std::string path = dir + "/cpp/rec.mp4";
        struct stat st {};
        if (stat(path.c_str(), &st) != 0 || st.st_size < 1000) fail("the recording " + path, 0);
        std::printf("ok: %s, %lld bytes, %d frames lent and released once each\n", path.c_str(),
                    static_cast<long long>(st.st_size), 2 * frames);
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "FAIL %s\n", e.what());
        return 1;
    }
}
