// cloudmixer GPU compositor: draws one layout item into one output plane.
//
// One draw (a 4-vertex triangle strip) per item and output plane, bottom item first. The quad
// covers the item rectangle; inside the image span the source is sampled, elsewhere the item
// shows its bar / placeholder colour. Alpha is applied by the fixed-function blender
// (src * a + dst * (1 - a)), whose result rounds like `sampling::blend`.
//
// Every rectangle, sampling map and colour matrix is computed on the CPU from `layout::place`
// and `color` (DESIGN §4); nothing here recomputes geometry. The sampling rule is the WGSL twin
// of `src/compose/sampling.rs` (`tap()`): texel centres at i + 0.5, bilinear weights rounded
// to 1/256, clamp to edge, centre-sited 4:2:0 chroma; the weighted sum is kept in integer
// 1/65536 units exactly as the CPU does.
//
// Only WebGPU core features: textureLoad on plain texture_2d bindings, one uniform buffer with
// a dynamic offset, no binding arrays, no immediates.

// Per-item, per-output-plane parameters (`pipeline::ItemUniform` on the Rust side, 160 bytes,
// one entry every 256 bytes of the uniform buffer, selected with a dynamic offset).
struct Item {
    // Item rectangle in output-plane texels, clipped to the plane: x0, y0, x1, y1 (the quad).
    rect: vec4<i32>,
    // Image span in output-plane texels: x0, y0, x1, y1 (empty when x0 >= x1: all bars).
    img: vec4<i32>,
    // Sampling map, rebased on the image origin for f32 precision:
    // source luma coordinate = (pos - origin) * scale + src0, per axis.
    // x: scale_x, y: src0_x, z: scale_y, w: src0_y.
    map: vec4<f32>,
    // x, y: image origin (output luma units); z, w: output plane size in texels.
    origin: vec4<f32>,
    // 3x4 affine colour map to BT.709 limited range (rows for Y, U, V), on 8-bit code values.
    m0: vec4<f32>,
    m1: vec4<f32>,
    m2: vec4<f32>,
    // Bar / placeholder colour as Y, U, V code values (w unused).
    fill: vec4<f32>,
    // Source texel counts: x, y full-resolution plane; z, w 4:2:0 chroma plane.
    src_size: vec4<u32>,
    // x: mode (0 fill only, 1 I420, 2 NV12, 3 RGBA); y: item alpha 0..255;
    // z: output subsampling (1 luma plane, 2 chroma planes); w: 1 = identity colour map.
    params: vec4<u32>,
}

// The item being drawn (dynamic offset selects the item and plane).
@group(0) @binding(0) var<uniform> item: Item;
// Source plane 0: Y (I420, NV12, R8Unorm) or RGBA (Rgba8Unorm).
@group(1) @binding(0) var tex0: texture_2d<f32>;
// Source plane 1: U (I420, R8Unorm) or interleaved UV (NV12, Rg8Unorm); a 1x1 dummy for RGBA.
@group(1) @binding(1) var tex1: texture_2d<f32>;
// Source plane 2: V (I420, R8Unorm); a 1x1 dummy otherwise.
@group(1) @binding(2) var tex2: texture_2d<f32>;

const MODE_FILL: u32 = 0u;
const MODE_I420: u32 = 1u;
const MODE_NV12: u32 = 2u;
const MODE_RGBA: u32 = 3u;

@vertex
fn vs_main(@builtin(vertex_index) vi: u32) -> @builtin(position) vec4<f32> {
    let r = vec4<f32>(item.rect);
    let fx = f32(vi & 1u);
    let fy = f32(vi >> 1u);
    let px = mix(r.x, r.z, fx);
    let py = mix(r.y, r.w, fy);
    return vec4<f32>(px / item.origin.z * 2.0 - 1.0, 1.0 - py / item.origin.w * 2.0, 0.0, 1.0);
}

// Two taps along one axis: first texel, second texel, weight of the second in 1/256.
struct Tap {
    i0: u32,
    i1: u32,
    w: u32,
}

// sampling::tap: `pos` in output luma units, `sub` the source plane's subsampling, `n` its size.
fn tap(pos: f32, origin: f32, scale: f32, src0: f32, sub: f32, n: u32) -> Tap {
    let s = (pos - origin) * scale + src0;
    let t = clamp(s / sub - 0.5, 0.0, f32(n - 1u));
    var i0 = u32(floor(t));
    // round half away from zero (t - i0 >= 0), like f64::round on the CPU
    var w = u32(floor((t - f32(i0)) * 256.0 + 0.5));
    if (w >= 256u) {
        i0 = i0 + 1u;
        w = 0u;
    }
    i0 = min(i0, n - 1u);
    return Tap(i0, min(i0 + 1u, n - 1u), w);
}

// unorm texel -> 8-bit code value
fn code(v: f32) -> u32 {
    return u32(floor(v * 255.0 + 0.5));
}

// Bilinear sample of one channel (R8 planes) in 1/65536 units (same integer maths as the CPU).
// Specialised per channel count: GPUs (and llvmpipe) run vector maths lane by lane, so
// unused channels would cost real ALU time.
fn bilinear1(t: texture_2d<f32>, tx: Tap, ty: Tap) -> u32 {
    let p00 = code(textureLoad(t, vec2<u32>(tx.i0, ty.i0), 0).x);
    let p10 = code(textureLoad(t, vec2<u32>(tx.i1, ty.i0), 0).x);
    let p01 = code(textureLoad(t, vec2<u32>(tx.i0, ty.i1), 0).x);
    let p11 = code(textureLoad(t, vec2<u32>(tx.i1, ty.i1), 0).x);
    let top = p00 * (256u - tx.w) + p10 * tx.w;
    let bot = p01 * (256u - tx.w) + p11 * tx.w;
    return top * (256u - ty.w) + bot * ty.w;
}

// As bilinear1, two channels (Rg8 NV12 chroma).
fn bilinear2(t: texture_2d<f32>, tx: Tap, ty: Tap) -> vec2<u32> {
    let k = vec2<f32>(255.0);
    let h = vec2<f32>(0.5);
    let p00 = vec2<u32>(floor(textureLoad(t, vec2<u32>(tx.i0, ty.i0), 0).xy * k + h));
    let p10 = vec2<u32>(floor(textureLoad(t, vec2<u32>(tx.i1, ty.i0), 0).xy * k + h));
    let p01 = vec2<u32>(floor(textureLoad(t, vec2<u32>(tx.i0, ty.i1), 0).xy * k + h));
    let p11 = vec2<u32>(floor(textureLoad(t, vec2<u32>(tx.i1, ty.i1), 0).xy * k + h));
    let top = p00 * (256u - tx.w) + p10 * tx.w;
    let bot = p01 * (256u - tx.w) + p11 * tx.w;
    return top * (256u - ty.w) + bot * ty.w;
}

// As bilinear1, four channels (RGBA).
fn bilinear4(t: texture_2d<f32>, tx: Tap, ty: Tap) -> vec4<u32> {
    let k = vec4<f32>(255.0);
    let h = vec4<f32>(0.5);
    let p00 = vec4<u32>(floor(textureLoad(t, vec2<u32>(tx.i0, ty.i0), 0) * k + h));
    let p10 = vec4<u32>(floor(textureLoad(t, vec2<u32>(tx.i1, ty.i0), 0) * k + h));
    let p01 = vec4<u32>(floor(textureLoad(t, vec2<u32>(tx.i0, ty.i1), 0) * k + h));
    let p11 = vec4<u32>(floor(textureLoad(t, vec2<u32>(tx.i1, ty.i1), 0) * k + h));
    let top = p00 * (256u - tx.w) + p10 * tx.w;
    let bot = p01 * (256u - tx.w) + p11 * tx.w;
    return top * (256u - ty.w) + bot * ty.w;
}

// color::apply: affine map on (a, b, c) code values, rounded and clamped to 0..255.
fn apply(a: f32, b: f32, c: f32) -> vec3<u32> {
    let y = item.m0.x * a + item.m0.y * b + item.m0.z * c + item.m0.w;
    let u = item.m1.x * a + item.m1.y * b + item.m1.z * c + item.m1.w;
    let v = item.m2.x * a + item.m2.y * b + item.m2.z * c + item.m2.w;
    return vec3<u32>(clamp(vec3<f32>(y, u, v) + 0.5, vec3<f32>(0.0), vec3<f32>(255.0)));
}

// Output code values (Y, U, V) and coverage 0..255 of one output-plane texel.
// `luma`: whether this is the Y plane (an identity map then samples only what it needs).
fn shade(frag: vec4<f32>, luma: bool) -> vec4<u32> {
    let c = vec2<i32>(floor(frag.xy));
    let alpha = item.params.y;
    let mode = item.params.x;
    let img = item.img;
    if (mode == MODE_FILL || c.x < img.x || c.x >= img.z || c.y < img.y || c.y >= img.w) {
        return vec4<u32>(vec3<u32>(item.fill.xyz), alpha);
    }
    // centre of this output sample in output luma units: c + 0.5 (luma) or 2c + 1 (chroma)
    let pos = (vec2<f32>(c) + 0.5) * f32(item.params.z);
    let k = 1.0 / 65536.0;
    let identity = item.params.w == 1u;
    if (mode == MODE_RGBA) {
        let fx = tap(pos.x, item.origin.x, item.map.x, item.map.y, 1.0, item.src_size.x);
        let fy = tap(pos.y, item.origin.y, item.map.z, item.map.w, 1.0, item.src_size.y);
        let s = bilinear4(tex0, fx, fy);
        let yuv = apply(f32(s.x) * k, f32(s.y) * k, f32(s.z) * k);
        let a_code = (s.w + 32768u) >> 16u;
        return vec4<u32>(yuv, a_code * alpha / 255u);
    }
    var ys = 0u;
    var us = 0u;
    var vs = 0u;
    if (!identity || luma) {
        let fx = tap(pos.x, item.origin.x, item.map.x, item.map.y, 1.0, item.src_size.x);
        let fy = tap(pos.y, item.origin.y, item.map.z, item.map.w, 1.0, item.src_size.y);
        ys = bilinear1(tex0, fx, fy);
    }
    if (!identity || !luma) {
        let cx = tap(pos.x, item.origin.x, item.map.x, item.map.y, 2.0, item.src_size.z);
        let cy = tap(pos.y, item.origin.y, item.map.z, item.map.w, 2.0, item.src_size.w);
        if (mode == MODE_I420) {
            us = bilinear1(tex1, cx, cy);
            vs = bilinear1(tex2, cx, cy);
        } else {
            let uv = bilinear2(tex1, cx, cy);
            us = uv.x;
            vs = uv.y;
        }
    }
    if (identity) {
        return vec4<u32>((vec3<u32>(ys, us, vs) + 32768u) >> vec3<u32>(16u), alpha);
    }
    return vec4<u32>(apply(f32(ys) * k, f32(us) * k, f32(vs) * k), alpha);
}

// Y plane (R8Unorm target).
@fragment
fn fs_y(@builtin(position) frag: vec4<f32>) -> @location(0) vec4<f32> {
    let o = shade(frag, true);
    if (o.w == 0u) {
        discard;
    }
    return vec4<f32>(f32(o.x) / 255.0, 0.0, 0.0, f32(o.w) / 255.0);
}

// Interleaved chroma for NV12 output (Rg8Unorm target: U, V).
@fragment
fn fs_uv(@builtin(position) frag: vec4<f32>) -> @location(0) vec4<f32> {
    let o = shade(frag, false);
    if (o.w == 0u) {
        discard;
    }
    return vec4<f32>(f32(o.y) / 255.0, f32(o.z) / 255.0, 0.0, f32(o.w) / 255.0);
}

// Planar chroma for I420 output: two R8Unorm targets.
struct Planar {
    // U plane
    @location(0) u: vec4<f32>,
    // V plane
    @location(1) v: vec4<f32>,
}

@fragment
fn fs_u_v(@builtin(position) frag: vec4<f32>) -> Planar {
    let o = shade(frag, false);
    if (o.w == 0u) {
        discard;
    }
    let a = f32(o.w) / 255.0;
    return Planar(vec4<f32>(f32(o.y) / 255.0, 0.0, 0.0, a), vec4<f32>(f32(o.z) / 255.0, 0.0, 0.0, a));
}
