use super::*;
use serde_json::json;

const SEED_CREATE: &str = r#"{"mode":0,"videoFileCfg":{"svrPathName":"/2021-09-24/2021-09-24_13-47-41_Win32_73542046.mp4","vWidth":1280,"vHeight":720,"vFps":15,"layoutConfig":[{"type":0,"top":180,"left":0,"width":640,"height":360,"keepAspectRatio":1,"param":{"camid":"Usr1.-1"}},{"type":0,"top":180,"left":640,"width":640,"height":360,"keepAspectRatio":1,"param":{"camid":"Usr2.-1"}}]}}"#;
const SEED_UPDATE: &str = r#"{"videoFileCfg":{"layoutConfig":[{"type":0,"top":0,"left":0,"width":1280,"height":720,"keepAspectRatio":1,"param":{"camid":"Usr1.-1"}},{"type":0,"top":495,"left":880,"width":400,"height":225,"keepAspectRatio":1,"param":{"camid":"Usr2.-1"}}]}}"#;

fn base() -> Value {
    serde_json::from_str(SEED_CREATE).unwrap()
}

/// Applies `f` to the seed config and returns the error text.
fn err_with(f: impl FnOnce(&mut Value)) -> String {
    let mut v = base();
    f(&mut v);
    MixerConfig::from_value(v)
        .expect_err("config should be rejected")
        .to_string()
}

fn item(v: &mut Value, i: usize) -> &mut Value {
    &mut v["videoFileCfg"]["layoutConfig"][i]
}

#[test]
fn seed_create_parses_verbatim() {
    let c = MixerConfig::from_json(SEED_CREATE).unwrap();
    assert_eq!(
        (c.output.width, c.output.height, c.output.fps),
        (1280, 720, 15)
    );
    assert_eq!(c.output.qp, 19);
    assert_eq!(c.output.effective_bitrate(), 1_000_000);
    assert_eq!(
        c.output.targets,
        vec![Target::File {
            path: PathBuf::from("2021-09-24/2021-09-24_13-47-41_Win32_73542046.mp4"),
            container: Container::Mp4
        }]
    );
    let l = &c.layout;
    assert_eq!(l.items.len(), 2);
    assert_eq!(l.items[1].rect, Rect::new(640, 180, 640, 360));
    assert_eq!(l.items[0].kind.source_id(), Some("Usr1.-1"));
    assert_eq!(l.items[0].fit, FitMode::Fit);
    assert_eq!(l.background, [16, 128, 128]);
}

#[test]
fn seed_update_parses_verbatim() {
    let c = MixerConfig::from_json(SEED_CREATE).unwrap();
    let l = c.parse_update(SEED_UPDATE).unwrap();
    assert_eq!(l.items[1].rect, Rect::new(880, 495, 400, 225));
    assert_eq!(l.items[0].rect, Rect::new(0, 0, 1280, 720));
    assert_ne!(l.generation, c.layout.generation);
}

#[test]
fn defaults() {
    let c = MixerConfig::from_value(json!({"videoFileCfg":{"svrPathName":"x.mkv","vWidth":640,"vHeight":480,"layoutConfig":[]}})).unwrap();
    assert_eq!(c.output.fps, 12);
    assert_eq!(c.output.effective_bitrate(), 500_000);
    assert_eq!(
        c.output.targets[0],
        Target::File {
            path: "x.mkv".into(),
            container: Container::Mkv
        }
    );
    let mut v = base();
    v["videoFileCfg"]["vFps"] = json!(0);
    assert_eq!(MixerConfig::from_value(v).unwrap().output.fps, 12);
}

#[test]
fn extensions_and_multi_targets() {
    let mut v = base();
    v["videoFileCfg"]["svrPathName"] = json!("/a/b.flv; rtmp://127.0.0.1/live/x ;c.ts");
    let c = MixerConfig::from_value(v).unwrap();
    assert_eq!(c.output.targets.len(), 3);
    assert!(matches!(c.output.targets[1], Target::Url { .. }));
    assert!(matches!(
        c.output.targets[2],
        Target::File {
            container: Container::Ts,
            ..
        }
    ));
}

#[test]
fn text_and_extension_fields() {
    let mut v = base();
    *item(&mut v, 1) = json!({"type":10,"left":0,"top":0,"width":200,"height":40,"param":{"text":"rec %timestamp%"}});
    item(&mut v, 0)["alpha"] = json!(0.5);
    item(&mut v, 0)["fit"] = json!("fill");
    item(&mut v, 0)["zorder"] = json!(5);
    v["videoFileCfg"]["backgroundColor"] = json!("#FFFFFF");
    let c = MixerConfig::from_value(v).unwrap();
    let l = &c.layout;
    assert_eq!(l.background, [235, 128, 128]);
    // zorder 5 goes on top of the text item
    assert_eq!(l.items[1].index, 0);
    assert_eq!(l.items[1].fit, FitMode::Fill);
    assert_eq!(l.items[1].alpha, 0.5);
    match &l.items[0].kind {
        ItemKind::Text {
            color,
            background,
            font_size,
            margin,
            ..
        } => {
            assert_eq!(
                (*color, *background, *font_size, *margin),
                ([255; 4], [0, 0, 0, 0x7d], 18, 5)
            );
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn keep_aspect_zero_stretches() {
    let mut v = base();
    item(&mut v, 0)["keepAspectRatio"] = json!(0);
    assert_eq!(
        MixerConfig::from_value(v).unwrap().layout.items[0].fit,
        FitMode::Stretch
    );
}

#[test]
fn odd_item_rects_are_fine_overhang_is_clipped() {
    let mut v = base();
    *item(&mut v, 1) =
        json!({"type":0,"left":1200,"top":-10,"width":495,"height":225,"param":{"camid":"a"}});
    let c = MixerConfig::from_value(v).unwrap();
    assert_eq!(
        c.layout.items[1].rect.clip(1280, 720),
        Some(Rect::new(1200, 0, 80, 215))
    );
}

// ---- bad input: each names the path and the rule ----

#[test]
fn bad_not_json() {
    let e = MixerConfig::from_json("{\"mode\":0,").unwrap_err();
    assert!(matches!(e, ConfigError::Json(_)));
    assert!(e.to_string().starts_with("config is not valid JSON"), "{e}");
}
#[test]
fn bad_nan_literal() {
    let e =
        MixerConfig::from_json(&SEED_CREATE.replace("\"vFps\":15", "\"vFps\":NaN")).unwrap_err();
    assert!(matches!(e, ConfigError::Json(_)), "{e}");
}
#[test]
fn bad_root_not_object() {
    assert_eq!(
        MixerConfig::from_json("[1]").unwrap_err().to_string(),
        "(root): must be an object, got [1]"
    );
}
#[test]
fn bad_missing_video_file_cfg() {
    assert_eq!(
        MixerConfig::from_json("{\"mode\":0}")
            .unwrap_err()
            .to_string(),
        "videoFileCfg: is required (or an audioFileCfg for an audio-only recording)"
    );
}
#[test]
fn bad_missing_width() {
    assert_eq!(
        err_with(|v| {
            v["videoFileCfg"].as_object_mut().unwrap().remove("vWidth");
        }),
        "videoFileCfg.vWidth: is required"
    );
}
#[test]
fn bad_width_string() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["vWidth"] = json!("1280")),
        "videoFileCfg.vWidth: must be an integer, got \"1280\""
    );
}
#[test]
fn bad_width_float() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["vWidth"] = json!(1280.5)),
        "videoFileCfg.vWidth: must be an integer, got 1280.5"
    );
}
#[test]
fn bad_odd_canvas() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["vHeight"] = json!(721)),
        "videoFileCfg.vHeight: must be even, got 721"
    );
}
#[test]
fn bad_zero_canvas() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["vWidth"] = json!(0)),
        "videoFileCfg.vWidth: must be > 0, got 0"
    );
}
#[test]
fn bad_huge_canvas() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["vWidth"] = json!(100000)),
        "videoFileCfg.vWidth: must be <= 8192, got 100000"
    );
}
#[test]
fn bad_fps_high() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["vFps"] = json!(31)),
        "videoFileCfg.vFps: must be <= 30, got 31"
    );
}
#[test]
fn bad_fps_negative() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["vFps"] = json!(-1)),
        "videoFileCfg.vFps: must be > 0, got -1"
    );
}
#[test]
fn bad_qp() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["vQP"] = json!(52)),
        "videoFileCfg.vQP: must be <= 51, got 52"
    );
}
#[test]
fn bad_bitrate_type() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["vBps"] = json!(true)),
        "videoFileCfg.vBps: must be an integer, got true"
    );
}
#[test]
fn bad_item_negative_width() {
    assert_eq!(
        err_with(|v| item(v, 1)["width"] = json!(-5)),
        "videoFileCfg.layoutConfig[1].width: must be > 0, got -5"
    );
}
#[test]
fn bad_item_zero_height() {
    assert_eq!(
        err_with(|v| item(v, 0)["height"] = json!(0)),
        "videoFileCfg.layoutConfig[0].height: must be > 0, got 0"
    );
}
#[test]
fn bad_item_huge() {
    assert_eq!(
        err_with(|v| item(v, 0)["width"] = json!(1_000_000)),
        "videoFileCfg.layoutConfig[0].width: must be <= 16384, got 1000000"
    );
}
#[test]
fn bad_item_float_left() {
    assert_eq!(
        err_with(|v| item(v, 1)["left"] = json!(640.0)),
        "videoFileCfg.layoutConfig[1].left: must be an integer, got 640.0"
    );
}
#[test]
fn bad_item_missing_top() {
    assert_eq!(
        err_with(|v| {
            item(v, 0).as_object_mut().unwrap().remove("top");
        }),
        "videoFileCfg.layoutConfig[0].top: is required"
    );
}
#[test]
fn bad_item_outside_canvas() {
    assert_eq!(
        err_with(|v| item(v, 1)["left"] = json!(1280)),
        "videoFileCfg.layoutConfig[1]: rect 640x360 at (1280,180) lies wholly outside the 1280x720 canvas"
    );
}
#[test]
fn bad_item_outside_canvas_negative() {
    let e = err_with(|v| item(v, 0)["top"] = json!(-360));
    assert!(
        e.starts_with("videoFileCfg.layoutConfig[0]: rect 640x360 at (0,-360) lies wholly outside"),
        "{e}"
    );
}
#[test]
fn bad_unknown_type() {
    assert_eq!(
        err_with(|v| item(v, 1)["type"] = json!(42)),
        "videoFileCfg.layoutConfig[1].type: unknown item type 42 (use 0 camera, 1 picture, 2 local screen, 3 media share, 5 screen share, 6 whiteboard, 10 text)"
    );
}
#[test]
fn bad_deprecated_type() {
    for ty in [4, 7, 8, 9] {
        let e = err_with(|v| item(v, 1)["type"] = json!(ty));
        assert!(
            e.starts_with(&format!(
                "videoFileCfg.layoutConfig[1].type: item type {ty} is deprecated"
            )),
            "{e}"
        );
    }
}

#[test]
fn stream_types_take_a_camid_or_their_default_key() {
    let mut v = base();
    let cell = |ty: i64, param: Value| json!({"type":ty,"left":0,"top":0,"width":64,"height":64,"param":param});
    v["videoFileCfg"]["layoutConfig"] = json!([
        cell(2, json!({"screenid": 1})),
        cell(3, Value::Null),
        cell(5, json!({})),
        cell(6, json!({"camid": "board.1"}))
    ]);
    let c = MixerConfig::from_value(v).unwrap();
    let ids: Vec<&str> = c
        .layout
        .items
        .iter()
        .filter_map(|i| i.kind.source_id())
        .collect();
    assert_eq!(
        ids,
        [
            LOCAL_SCREEN_KEY,
            MEDIA_SHARE_KEY,
            SCREEN_SHARE_KEY,
            "board.1"
        ]
    );
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    assert_eq!(
        err_with(|v| *item(v, 1) = cell(6, json!({"camid": " "}))),
        "videoFileCfg.layoutConfig[1].param.camid: must not be empty"
    );
}

#[test]
fn placeholders_and_background_picture() {
    let mut v = base();
    v["videoFileCfg"]["placeholder"] = json!("camera_off");
    v["videoFileCfg"]["backgroundImage"] = json!("room_bg");
    item(&mut v, 1)["param"]["placeholder"] = json!("usr2_avatar");
    let c = MixerConfig::from_value(v).unwrap();
    let l = &c.layout;
    assert_eq!(l.placeholder_image(), Some("camera_off"));
    assert_eq!(
        l.placeholder(),
        l.background(),
        "the colour stays the default"
    );
    assert_eq!(l.background_image(), Some("room_bg"));
    assert_eq!(l.items[1].placeholder.as_deref(), Some("usr2_avatar"));
    assert!(l.uses_source("usr2_avatar") && l.uses_source("room_bg"));
    // a colour (with or without '#') is a colour
    for p in ["#FF0000", "FF0000"] {
        let mut v = base();
        v["videoFileCfg"]["placeholder"] = json!(p);
        let c = MixerConfig::from_value(v).unwrap();
        assert_eq!(c.layout.placeholder(), [63, 102, 240]);
        assert_eq!(c.layout.placeholder_image(), None);
    }
    // every named picture must be registered; the error names the field
    let mut v = base();
    v["videoFileCfg"]["backgroundImage"] = json!("room_bg");
    item(&mut v, 1)["param"]["placeholder"] = json!("usr2_avatar");
    let c = MixerConfig::from_value(v).unwrap();
    assert_eq!(
        check_pictures(&c.layout, |id| id == "room_bg")
            .unwrap_err()
            .to_string(),
        "videoFileCfg.layoutConfig[1].param.placeholder: picture \"usr2_avatar\" is not registered"
    );
    assert!(check_pictures(&c.layout, |_| true).is_ok());
}

#[test]
fn bad_text_items_name_the_field() {
    let text = |param: Value| {
        move |v: &mut Value| {
            *item(v, 1) = json!({"type":10,"left":0,"top":0,"width":1,"height":1,"param":param})
        }
    };
    let p = "videoFileCfg.layoutConfig[1].param";
    assert_eq!(
        err_with(text(json!({}))),
        format!("{p}.text: is required for an item of type 10")
    );
    assert_eq!(
        err_with(text(json!({"text": "  "}))),
        format!("{p}.text: must not be empty")
    );
    assert_eq!(
        err_with(text(json!({"text": "会".repeat(257)}))),
        format!("{p}.text: at most 256 characters, got 257")
    );
    assert!(MixerConfig::from_value({
        let mut v = base();
        text(json!({"text": "会".repeat(256)}))(&mut v);
        v
    })
    .is_ok());
    assert_eq!(
        err_with(text(json!({"text": "a", "font-size": -3}))),
        format!("{p}.font-size: must be > 0, got -3")
    );
    assert_eq!(
        err_with(text(json!({"text": "a", "font-size": 300}))),
        format!("{p}.font-size: must be <= 256, got 300")
    );
    assert_eq!(
        err_with(text(json!({"text": "a", "text-margin": -1}))),
        format!("{p}.text-margin: must be >= 0, got -1")
    );
    assert_eq!(
        err_with(text(json!({"text": "a", "color": "#FFF"}))),
        format!("{p}.color: must be a colour #RRGGBB or #RRGGBBAA, got \"#FFF\"")
    );
    assert_eq!(
        err_with(text(json!({"text": "a", "background": "black"}))),
        format!("{p}.background: must be a colour #RRGGBB or #RRGGBBAA, got \"black\"")
    );
    assert_eq!(
        err_with(|v| item(v, 1)["param"]["placeholder"] = json!("")),
        "videoFileCfg.layoutConfig[1].param.placeholder: must name a registered picture, got an empty string"
    );
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["backgroundImage"] = json!(5)),
        "videoFileCfg.backgroundImage: must be a string, got 5"
    );
}
#[test]
fn bad_missing_camid() {
    assert_eq!(
        err_with(|v| item(v, 0)["param"] = json!({})),
        "videoFileCfg.layoutConfig[0].param.camid: is required for an item of type 0"
    );
}
#[test]
fn bad_empty_camid() {
    assert_eq!(
        err_with(|v| item(v, 0)["param"]["camid"] = json!(" ")),
        "videoFileCfg.layoutConfig[0].param.camid: must not be empty"
    );
}
#[test]
fn bad_camid_number() {
    assert_eq!(
        err_with(|v| item(v, 0)["param"]["camid"] = json!(7)),
        "videoFileCfg.layoutConfig[0].param.camid: must be a string, got 7"
    );
}
#[test]
fn bad_picture_without_resource() {
    assert_eq!(
        err_with(|v| item(v, 0)["type"] = json!(1)),
        "videoFileCfg.layoutConfig[0].param.resourceid: is required for an item of type 1"
    );
}
#[test]
fn bad_layout_not_array() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["layoutConfig"] = json!({})),
        "videoFileCfg.layoutConfig: must be an array, got {}"
    );
}
#[test]
fn bad_item_not_object() {
    assert_eq!(
        err_with(|v| *item(v, 0) = json!("cam")),
        "videoFileCfg.layoutConfig[0]: must be an object, got \"cam\""
    );
}
#[test]
fn bad_keep_aspect() {
    assert_eq!(
        err_with(|v| item(v, 0)["keepAspectRatio"] = json!(2)),
        "videoFileCfg.layoutConfig[0].keepAspectRatio: must be <= 1, got 2"
    );
}
#[test]
fn bad_alpha() {
    assert_eq!(
        err_with(|v| item(v, 0)["alpha"] = json!(1.5)),
        "videoFileCfg.layoutConfig[0].alpha: must be between 0 and 1, got 1.5"
    );
}
#[test]
fn bad_fit() {
    assert_eq!(
        err_with(|v| item(v, 0)["fit"] = json!("cover")),
        "videoFileCfg.layoutConfig[0].fit: must be \"fit\", \"fill\" or \"stretch\", got \"cover\""
    );
}
#[test]
fn bad_background_colour() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["backgroundColor"] = json!("red")),
        "videoFileCfg.backgroundColor: must be a colour #RRGGBB or #RRGGBBAA, got \"red\""
    );
}
#[test]
fn bad_mode() {
    assert_eq!(
        err_with(|v| v["mode"] = json!(7)),
        "mode: must be 0 (composite) or 1 (one file per stream), got 7"
    );
    // the seed is a mode 0 config: with mode 1 its mode 0 fields are named
    assert_eq!(
        err_with(|v| v["mode"] = json!(1)),
        "videoFileCfg.svrPathName: is for mode 0; mode 1 names its files by svrPath + svrFileNameSuffix"
    );
}

fn mode1(f: impl FnOnce(&mut Value)) -> std::result::Result<MixerConfig, String> {
    let mut v = json!({"mode": 1,
        "videoFileCfg": {"svrPath": "/r", "svrFileNameSuffix": ".mp4", "subscribeVideos": ["u1.0"]},
        "audioFileCfg": {"svrPath": "/r", "svrFileNameSuffix": ".wav", "subscribeAudios": "_cr_all_"}});
    f(&mut v);
    MixerConfig::from_value(v).map_err(|e| e.to_string())
}

#[test]
fn mode1_fields_and_errors() {
    let c = mode1(|_| {}).unwrap();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    let ps = c.per_stream.as_ref().unwrap();
    assert!(ps.subscribes_video("u1.0", true) && !ps.subscribes_video("u2.0", true));
    assert!(ps.subscribes_audio("anyone"));
    assert!(!c.has_video() && c.audio_file.is_none());
    assert_eq!(
        ps.audio_file_name("u/1", "2026-01-02_03-04-05").unwrap(),
        "/r/u_1_0_2026-01-02_03-04-05.wav",
        "a '/' in a user ID cannot make a folder"
    );
    let err = |f: fn(&mut Value)| mode1(f).unwrap_err();
    assert_eq!(
        err(|v| v["videoFileCfg"]["subscribeVideos"] = json!(["u1"])),
        "videoFileCfg.subscribeVideos[0]: \"u1\" is not a camid \"userId.camId\" (or _cr_all_, _cr_allDefCam_)"
    );
    assert_eq!(
        err(|v| v["videoFileCfg"]["subscribeVideos"] = json!([])),
        "videoFileCfg.subscribeVideos: must not be empty"
    );
    assert_eq!(
        err(|v| v["videoFileCfg"]["svrFileNameSuffix"] = json!(".avi")),
        "videoFileCfg.svrFileNameSuffix: must be one of .mp4, .flv, .ts, .mkv, got \".avi\""
    );
    assert_eq!(
        err(|v| v["videoFileCfg"]["aStreamType"] = json!(2)),
        "videoFileCfg.aStreamType: must be 0 (the user's own audio) or 1 (everyone's), got 2"
    );
    assert_eq!(
        err(|v| v["audioFileCfg"]["subscribeAudios"] = json!(["_cr_allDefCam_"])),
        "audioFileCfg.subscribeAudios: _cr_allDefCam_ selects cameras; use _cr_all_ or user IDs"
    );
    assert_eq!(
        err(|v| v["videoFileCfg"]["svrPath"] = json!("/a/../../b")),
        "videoFileCfg.svrPath: '..' escapes the storage root"
    );
    assert_eq!(
        err(|v| {
            v.as_object_mut().unwrap().remove("videoFileCfg");
            v.as_object_mut().unwrap().remove("audioFileCfg");
        }),
        "videoFileCfg: mode 1 needs a videoFileCfg or an audioFileCfg"
    );
    assert_eq!(
        err(|v| v["nicknames"] = json!({"u1": ""})),
        "nicknames.u1: must be a non-empty string"
    );
}
#[test]
fn bad_path_dotdot() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["svrPathName"] = json!("/rec/../../etc/x.mp4")),
        "videoFileCfg.svrPathName: \"/rec/../../etc/x.mp4\": '..' escapes the storage root"
    );
}
#[test]
fn bad_path_escapes() {
    for p in [
        "~/x.mp4",
        "C:/x.mp4",
        "..\\x.mp4",
        "/a/\u{0}.mp4",
        "/dir/",
        "file:///etc/x.mp4",
        "",
    ] {
        let e = err_with(|v| v["videoFileCfg"]["svrPathName"] = json!(p));
        assert!(e.starts_with("videoFileCfg.svrPathName:"), "{p:?}: {e}");
    }
}
#[test]
fn bad_path_extension() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["svrPathName"] = json!("/a/rec.avi")),
        "videoFileCfg.svrPathName: \"/a/rec.avi\": extension must be .mp4, .flv, .ts, .mkv or .m3u8"
    );
}
#[test]
fn bad_missing_path() {
    assert_eq!(
        err_with(|v| {
            v["videoFileCfg"]
                .as_object_mut()
                .unwrap()
                .remove("svrPathName");
        }),
        "videoFileCfg.svrPathName: is required"
    );
}
#[test]
fn bad_too_many_items() {
    let e = err_with(|v| {
        let it = item(v, 0).clone();
        v["videoFileCfg"]["layoutConfig"] = Value::Array(vec![it; 65]);
    });
    assert_eq!(e, "videoFileCfg.layoutConfig: at most 64 items, got 65");
}

// ---- updates ----

#[test]
fn update_may_not_change_size() {
    let c = MixerConfig::from_json(SEED_CREATE).unwrap();
    let e = c
        .parse_update(r#"{"videoFileCfg":{"vWidth":640,"layoutConfig":[]}}"#)
        .unwrap_err();
    assert_eq!(
        e,
        ConfigError::NotUpdatable {
            path: "videoFileCfg.vWidth".into()
        }
    );
    assert!(e
        .to_string()
        .contains("update_content may change videoFileCfg.layoutConfig only"));
    // repeating the current value is fine
    c.parse_update(r#"{"mode":0,"videoFileCfg":{"vWidth":1280,"vFps":15,"layoutConfig":[]}}"#)
        .unwrap();
    let e = c
        .parse_update(r#"{"mode":0,"videoFileCfg":{"svrPathName":"/x.mp4","layoutConfig":[]}}"#)
        .unwrap_err();
    assert_eq!(e.path(), Some("videoFileCfg.svrPathName"));
}

#[test]
fn update_errors_name_paths() {
    let c = MixerConfig::from_json(SEED_CREATE).unwrap();
    let e = c
        .parse_update(&SEED_UPDATE.replace("\"width\":400", "\"width\":-5"))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "videoFileCfg.layoutConfig[1].width: must be > 0, got -5"
    );
    assert_eq!(
        c.parse_update("{}").unwrap_err().to_string(),
        "videoFileCfg: is required"
    );
    assert!(matches!(c.parse_update("nope"), Err(ConfigError::Json(_))));
}

fn audio_cfg(extra: &str) -> String {
    format!(
        r#"{{"mode":0,"videoFileCfg":{{"svrPathName":"/a.mp4","vWidth":64,"vHeight":48,{extra}"layoutConfig":[]}}}}"#
    )
}

#[test]
fn audio_fields_parse() {
    use crate::model::audio::ChannelMode;
    let c = MixerConfig::from_json(&audio_cfg("")).unwrap();
    assert_eq!(c.audio.channels, ChannelMode::Mono { users: vec![] });
    assert_eq!(c.audio.channel_count(), 1);
    let c = MixerConfig::from_json(&audio_cfg(
        r#""aChannelType":1,"aChannelContent":["Usr1","Usr2"],"aBps":96000,"#,
    ))
    .unwrap();
    assert_eq!(
        c.audio.channels,
        ChannelMode::LeftRight {
            left: "Usr1".into(),
            right: "Usr2".into()
        }
    );
    assert_eq!(c.audio.bitrate, Some(96_000));
    assert_eq!(c.audio.channel_count(), 2);
    let c = MixerConfig::from_json(&audio_cfg(r#""aChannelContent":["a","b","c"],"#)).unwrap();
    assert_eq!(
        c.audio.channels,
        ChannelMode::Mono {
            users: vec!["a".into(), "b".into(), "c".into()]
        }
    );
    // audio only
    let c = MixerConfig::from_json(
        r#"{"mode":0,"audioFileCfg":{"svrPathName":"/r/a.mp3","aChannelType":1,"aChannelContent":["x","y"]}}"#,
    )
    .unwrap();
    assert!(!c.has_video());
    let af = c.audio_file.unwrap();
    assert_eq!(af.audio.channel_count(), 2);
    assert!(matches!(
        af.target,
        Target::File {
            container: Container::Mp3,
            ..
        }
    ));
    // both: an audio+video file and an audio file
    let c = MixerConfig::from_json(
        r#"{"mode":0,"audioFileCfg":{"svrPathName":"/a.wav"},"videoFileCfg":{"svrPathName":"/a.mp4","vWidth":64,"vHeight":48,"layoutConfig":[]}}"#,
    )
    .unwrap();
    assert!(c.has_video() && c.audio_file.is_some());
}

#[test]
fn bad_audio_fields_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            r#""aChannelType":2,"#,
            "videoFileCfg.aChannelType: must be 0 (mono) or 1 (left/right), got 2",
        ),
        (
            r#""aChannelType":"1","#,
            "videoFileCfg.aChannelType: must be an integer, got \"1\"",
        ),
        (
            r#""aChannelContent":"Usr1","#,
            "videoFileCfg.aChannelContent: must be an array of user IDs, got \"Usr1\"",
        ),
        (
            r#""aChannelContent":["Usr1",7],"#,
            "videoFileCfg.aChannelContent[1]: must be a user ID (a non-empty string), got 7",
        ),
        (
            r#""aChannelContent":[""],"#,
            "videoFileCfg.aChannelContent[0]: must be a user ID (a non-empty string), got \"\"",
        ),
        (
            r#""aChannelType":1,"aChannelContent":["Usr1"],"#,
            "videoFileCfg.aChannelContent: left/right (aChannelType 1) needs exactly two user IDs [left, right], got 1",
        ),
        (
            r#""aChannelType":1,"aChannelContent":["a","b","c"],"#,
            "videoFileCfg.aChannelContent: left/right (aChannelType 1) needs exactly two user IDs [left, right], got 3",
        ),
        (
            r#""aChannelType":1,"#,
            "videoFileCfg.aChannelContent: left/right (aChannelType 1) needs exactly two user IDs [left, right], got 0",
        ),
        (
            r#""aChannelType":1,"aChannelContent":["a","a"],"#,
            "videoFileCfg.aChannelContent: left/right (aChannelType 1) needs two different user IDs",
        ),
        (r#""aBps":1000,"#, "videoFileCfg.aBps: must be >= 16000, got 1000"),
        (r#""aBps":1e9,"#, "videoFileCfg.aBps: must be an integer, got 1000000000.0"),
    ];
    for (extra, want) in cases {
        let e = MixerConfig::from_json(&audio_cfg(extra)).unwrap_err();
        assert_eq!(&e.to_string(), want, "{extra}");
    }
    let bad_files: &[(&str, &str)] = &[
        (
            r#"{"audioFileCfg":{"svrPathName":"/a.ogg"}}"#,
            "audioFileCfg.svrPathName: \"/a.ogg\": extension must be .m4a, .aac, .mp3 or .wav",
        ),
        (
            r#"{"audioFileCfg":{"svrPathName":"/a.mp4"}}"#,
            "audioFileCfg.svrPathName: \"/a.mp4\": extension must be .m4a, .aac, .mp3 or .wav",
        ),
        (
            r#"{"audioFileCfg":{"svrPathName":"rtmp://h/a"}}"#,
            "audioFileCfg.svrPathName: \"rtmp://h/a\": audio recordings are files, not URLs",
        ),
        (
            r#"{"audioFileCfg":{"svrPathName":"/a.mp3;/b.wav"}}"#,
            "audioFileCfg.svrPathName: must name one audio file, got 2",
        ),
        (
            r#"{"audioFileCfg":{"svrPathName":"../a.mp3"}}"#,
            "audioFileCfg.svrPathName: \"../a.mp3\": '..' escapes the storage root",
        ),
        (r#"{"audioFileCfg":{}}"#, "audioFileCfg.svrPathName: is required"),
        (
            r#"{"audioFileCfg":{"svrPathName":"/a.wav","aChannelType":1,"aChannelContent":["x"]}}"#,
            "audioFileCfg.aChannelContent: left/right (aChannelType 1) needs exactly two user IDs [left, right], got 1",
        ),
        (
            r#"{"videoFileCfg":{"svrPathName":"/a.mp4","vWidth":64,"vHeight":48,"layoutConfig":[]},"audioFileCfg":{"svrPathName":"/a.mp4"}}"#,
            "audioFileCfg.svrPathName: \"/a.mp4\": extension must be .m4a, .aac, .mp3 or .wav",
        ),
        (
            r#"{"videoFileCfg":{"svrPathName":"/a.mp4","vWidth":64,"vHeight":48,"layoutConfig":[]},"audioFileCfg":{"svrPathName":"/x.wav","aBps":5}}"#,
            "audioFileCfg.aBps: must be >= 16000, got 5",
        ),
    ];
    for (json, want) in bad_files {
        let e = MixerConfig::from_json(json).unwrap_err();
        assert_eq!(&e.to_string(), want, "{json}");
    }
    // an audio-only mixer has no layout to update
    let c = MixerConfig::from_json(r#"{"audioFileCfg":{"svrPathName":"/a.wav"}}"#).unwrap();
    assert_eq!(
        c.parse_update(r#"{"videoFileCfg":{"layoutConfig":[]}}"#)
            .unwrap_err()
            .to_string(),
        "videoFileCfg: this mixer records audio only: it has no layout to update"
    );
}

#[test]
fn duplicate_keys_are_errors_naming_the_path() {
    let cases = [
        (
            r#"{"mode":0,"mode":0,"videoFileCfg":{}}"#,
            "mode: duplicate key (each key may appear once in an object)",
        ),
        (
            r#"{"videoFileCfg":{"svrPathName":"a.mp4","vWidth":640,"vWidth":1280,"vHeight":360,"layoutConfig":[]}}"#,
            "videoFileCfg.vWidth: duplicate key (each key may appear once in an object)",
        ),
        (
            r#"{"videoFileCfg":{"svrPathName":"a.mp4","vWidth":640,"vHeight":360,"layoutConfig":[{"type":0,"left":0,"top":0,"width":10,"height":10,"param":{"camid":"a"}},{"type":0,"left":0,"top":0,"left":5,"width":10,"height":10,"param":{"camid":"b"}}]}}"#,
            "videoFileCfg.layoutConfig[1].left: duplicate key (each key may appear once in an object)",
        ),
        (
            r#"{"videoFileCfg":{"svrPathName":"a.mp4","vWidth":640,"vHeight":360,"layoutConfig":[{"type":0,"left":0,"top":0,"width":10,"height":10,"param":{"camid":"a","camid":"b"}}]}}"#,
            "videoFileCfg.layoutConfig[0].param.camid: duplicate key (each key may appear once in an object)",
        ),
    ];
    for (text, want) in cases {
        let e = MixerConfig::from_json(text).unwrap_err();
        assert_eq!(e.to_string(), want);
        assert!(e.path().is_some());
    }
    // updates too
    let c = MixerConfig::from_json(SEED_CREATE).unwrap();
    let e = c
        .parse_update(r#"{"videoFileCfg":{"layoutConfig":[],"layoutConfig":[]}}"#)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "videoFileCfg.layoutConfig: duplicate key (each key may appear once in an object)"
    );
    // the same key in two objects is fine
    assert!(parse_json(r#"{"a":{"x":1},"b":{"x":1}}"#).is_ok());
    // and the value is what serde_json would build
    let text = r#"{"a":[1,-2,3.5,"s\n",null,true,{"b":{}}],"c":18446744073709551615}"#;
    assert_eq!(
        parse_json(text).unwrap(),
        serde_json::from_str::<Value>(text).unwrap()
    );
    // trailing garbage is still refused
    assert!(matches!(parse_json("{} x"), Err(ConfigError::Json(_))));
}

#[test]
fn minus_zero_is_zero_for_integer_fields() {
    let text = SEED_CREATE.replace(r#""top":180,"left":0,"#, r#""top":180,"left":-0,"#);
    let c = MixerConfig::from_json(&text).unwrap();
    assert_eq!(c.layout.items[0].rect, Rect::new(0, 180, 640, 360));
    let text = SEED_CREATE.replace(r#""mode":0"#, r#""mode":-0"#);
    assert_eq!(MixerConfig::from_json(&text).unwrap().mode, 0);
    // other fractions stay errors
    let text = SEED_CREATE.replace(r#""top":180,"left":0,"#, r#""top":180,"left":0.5,"#);
    assert_eq!(
        MixerConfig::from_json(&text).unwrap_err().to_string(),
        "videoFileCfg.layoutConfig[0].left: must be an integer, got 0.5"
    );
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let text = format!("\u{feff}{SEED_CREATE}");
    let c = MixerConfig::from_json(&text).unwrap();
    assert_eq!(c.output.width, 1280);
    let l = c.parse_update(&format!("\u{feff}{SEED_UPDATE}")).unwrap();
    assert_eq!(l.items.len(), 2);
}

#[test]
fn control_characters_in_echoed_values_are_escaped() {
    let e = err_with(|v| v["videoFileCfg"]["svrPathName"] = json!("/rec\n\u{0}.mp4"));
    assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
    assert!(e.contains(r"/rec\n\u{0}.mp4"), "{e}");
    assert!(e.starts_with("videoFileCfg.svrPathName: "), "{e}");
    let e = err_with(|v| item(v, 0)["fit"] = json!("fi\tt"));
    assert!(e.contains(r#"got "fi\tt""#), "{e}");
    // keys in paths (unknown, not updatable) too
    let c = MixerConfig::from_json(SEED_CREATE).unwrap();
    let e = c
        .parse_update(r#"{"vid\neo":1,"videoFileCfg":{"layoutConfig":[]}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(r"vid\neo: cannot be changed"), "{e}");
    let e = MixerConfig::from_json(r#"{"mode":0,"mo\u0001":1,"mo\u0001":2}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        r"mo\u{1}: duplicate key (each key may appear once in an object)"
    );
    assert_eq!(escape_controls("a\r\u{7f}b"), r"a\r\u{7f}b");
}

#[test]
fn unknown_fields_are_warnings_with_a_did_you_mean() {
    let text = r#"{"mode":0,"storageConfig":{"vendor":1,"region":"cn-hangzhou","bucket":"b","accessKey":"k","secretKey":"s","endPoint":"x"},"recordId":"x","videoFileCfg":{"svrPathName":"a.mp4","vWidth":640,"vWidht":640,"vHeight":360,
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":10,"height":10,"keepAspectratio":1,"param":{"camid":"a","camId2":"b","font_size":3}}]},
        "audioFileCfg":{"svrPathName":"a.m4a","aBPS":64000}}"#;
    let c = MixerConfig::from_json(text).unwrap();
    assert_eq!(
        c.warnings(),
        [
            "recordId: unknown field",
            "storageConfig.endPoint: unknown field (did you mean endpoint?)",
            "audioFileCfg.aBPS: unknown field (did you mean aBps?)",
            "videoFileCfg.vWidht: unknown field (did you mean vWidth?)",
            "videoFileCfg.layoutConfig[0].keepAspectratio: unknown field (did you mean keepAspectRatio?)",
            "videoFileCfg.layoutConfig[0].param.camId2: unknown field (did you mean camid?)",
            "videoFileCfg.layoutConfig[0].param.font_size: unknown field (did you mean font-size?)",
        ]
    );
    // a far miss has no suggestion
    assert_eq!(
        unknown_fields(&json!({"videoFileCfg":{"layoutConfig":[{"param":{"userName":"x"}}]}})),
        ["videoFileCfg.layoutConfig[0].param.userName: unknown field"]
    );
}

#[test]
fn the_seed_and_fixture_configs_have_no_warnings() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/layouts");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let v = parse_json(&text).unwrap();
        assert_eq!(unknown_fields(&v), Vec::<String>::new(), "{}", p.display());
        if let Ok(c) = MixerConfig::from_json(&text) {
            assert!(c.warnings().is_empty(), "{}", p.display());
        }
        n += 1;
    }
    assert!(n >= 5);
    assert!(MixerConfig::from_json(SEED_CREATE)
        .unwrap()
        .warnings()
        .is_empty());
}

#[test]
fn outputs_storage_and_segments() {
    let c = MixerConfig::from_value({
        let mut v = base();
        v["videoFileCfg"]["svrPathName"] = json!("/a.mp4;live/a.m3u8;rtmp://h/live/x");
        v["videoFileCfg"]["segmentDuration"] = json!(2);
        v["storageConfig"] = json!({"vendor":1,"region":"cn-hangzhou","bucket":"rec",
            "accessKey":"AK","secretKey":"SK","endpoint":"http://127.0.0.1:9000","keepLocal":1});
        v
    })
    .unwrap();
    assert_eq!(c.output.targets.len(), 3);
    assert_eq!(
        c.output.segments.duration,
        Some(std::time::Duration::from_secs(2))
    );
    let st = c.storage.as_ref().unwrap();
    assert_eq!(
        (st.vendor, st.bucket.as_str(), st.keep_local),
        (1, "rec", true)
    );
    assert!(
        !format!("{st:?}").contains("SK"),
        "the secret is never printed"
    );
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["svrPathName"] = json!("/a.mp4; a.mp4")),
        "videoFileCfg.svrPathName: \"a.mp4\" is named twice (each file is written once)"
    );
    assert_eq!(
        err_with(|v| v["storageConfig"] =
            json!({"vendor":1,"bucket":"b","accessKey":"k","secretKey":"s"})),
        "storageConfig.region: is required"
    );
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["segmentDuration"] = json!(0.5)),
        "videoFileCfg.segmentDuration: must be between 1 and 86400 seconds, got 0.5"
    );
}

#[test]
fn keys_of_the_other_mode_are_errors() {
    // mode 1 keys in a mode 0 config
    let rule = "is for mode 1 (one file per stream); this config is mode 0 (composite)";
    for (path, set) in [
        (
            "roomId",
            (|v: &mut Value| v["roomId"] = json!("888")) as fn(&mut Value),
        ),
        ("nicknames", |v| v["nicknames"] = json!({"Usr1": "Ann"})),
        ("videoFileCfg.svrPath", |v| {
            v["videoFileCfg"]["svrPath"] = json!("/rec")
        }),
        ("videoFileCfg.svrFileNameSuffix", |v| {
            v["videoFileCfg"]["svrFileNameSuffix"] = json!(".mp4")
        }),
        ("videoFileCfg.subscribeVideos", |v| {
            v["videoFileCfg"]["subscribeVideos"] = json!(["_cr_all_"])
        }),
        ("videoFileCfg.aStreamType", |v| {
            v["videoFileCfg"]["aStreamType"] = json!(1)
        }),
        (
            "audioFileCfg.subscribeAudios",
            |v| v["audioFileCfg"] = json!({"svrPathName": "/a.mp3", "subscribeAudios": ["u1"]}),
        ),
        ("audioFileCfg.svrPath", |v| {
            v["audioFileCfg"] = json!({"svrPathName": "/a.mp3", "svrPath": "/rec"})
        }),
    ] {
        assert_eq!(err_with(set), format!("{path}: {rule}"));
    }
    // null is no value
    let mut v = base();
    v["roomId"] = Value::Null;
    MixerConfig::from_value(v).unwrap();
    // mode 0 keys in a mode 1 config
    let rule = "is for mode 0 (composite); this config is mode 1 (one file per stream), where \
                it would be ignored";
    let err = |f: fn(&mut Value)| mode1(f).unwrap_err();
    assert_eq!(
        err(|v| v["videoFileCfg"]["vWidth"] = json!(640)),
        format!("videoFileCfg.vWidth: {rule}")
    );
    assert_eq!(
        err(|v| v["videoFileCfg"]["placeholder"] = json!("#000000")),
        format!("videoFileCfg.placeholder: {rule}")
    );
    assert_eq!(
        err(|v| v["audioFileCfg"]["aChannelContent"] = json!(["u1"])),
        format!("audioFileCfg.aChannelContent: {rule}")
    );
    assert_eq!(
        err(|v| v["videoFileCfg"]["layoutConfig"] = json!([])),
        "videoFileCfg.layoutConfig: is for mode 0; mode 1 names its files by svrPath + svrFileNameSuffix"
    );
    // the extensions both modes share stay accepted
    mode1(|v| {
        v["videoFileCfg"]["vFps"] = json!(15);
        v["videoFileCfg"]["segmentSize"] = json!(1_000_000);
        v["videoFileCfg"]["mixedLayout"] = json!(1);
    })
    .unwrap();
}

#[test]
fn mode1_segments_reach_each_streams_config() {
    let c = mode1(|v| {
        v["videoFileCfg"]["segmentDuration"] = json!(2.5);
        v["videoFileCfg"]["segmentSize"] = json!(100_000);
    })
    .unwrap();
    let want = Segments {
        duration: Some(std::time::Duration::from_millis(2500)),
        size: Some(100_000),
        ..Segments::default()
    };
    assert_eq!(c.output.segments, want);
    let ps = c.per_stream.as_ref().unwrap();
    let one = ps
        .video_config("u1.0", 640, 480, 15, "2026-01-02_03-04-05")
        .unwrap();
    assert_eq!(one.output.segments, want);
    assert_eq!(
        mode1(|v| v["videoFileCfg"]["segmentSize"] = json!(10)).unwrap_err(),
        "videoFileCfg.segmentSize: must be >= 65536, got 10"
    );
}

#[test]
fn long_nicknames_are_cut_to_fit_a_file_name() {
    let long = |end: &str| format!("{}{end}", "é".repeat(140));
    let c = mode1(|v| {
        v["roomId"] = json!("888");
        v["nicknames"] = json!({"u1": long("a"), "u2": long("b"), "u3": "Bob"});
    })
    .unwrap();
    let ps = c.per_stream.as_ref().unwrap();
    let at = "2026-01-02_03-04-05";
    let name = |p: String| p.rsplit('/').next().unwrap().to_string();
    let v1 = name(ps.video_file_name("u1.0", at).unwrap());
    let v2 = name(ps.video_file_name("u2.0", at).unwrap());
    let a1 = name(ps.audio_file_name("u1", at).unwrap());
    let a2 = name(ps.audio_file_name("u2", at).unwrap());
    for n in [&v1, &v2, &a1, &a2] {
        assert!(
            n.len() <= per_stream::MAX_FILE_NAME,
            "{} bytes: {n}",
            n.len()
        );
        assert!(n.starts_with("éééé"), "{n}");
        assert!(n.contains('~'), "{n}");
    }
    assert!(v1.ends_with("_cam0_888_2026-01-02_03-04-05.mp4"), "{v1}");
    assert!(a1.ends_with("_888_2026-01-02_03-04-05.wav"), "{a1}");
    assert_ne!(v1, v2);
    assert_ne!(a1, a2);
    // stable: the same stream gets the same name
    assert_eq!(v1, name(ps.video_file_name("u1.0", at).unwrap()));
    // short names are the vendor's rule unchanged
    assert_eq!(
        ps.video_file_name("u3.0", at).unwrap(),
        "/r/Bob_cam0_888_2026-01-02_03-04-05.mp4"
    );
    // a huge camera number is cut too, the suffix kept
    let v = name(
        ps.video_file_name(&format!("u3.{}", "9".repeat(300)), at)
            .unwrap(),
    );
    assert!(
        v.len() <= per_stream::MAX_FILE_NAME && v.ends_with(".mp4"),
        "{v}"
    );
    // a path component too long for any file system is a config error
    assert_eq!(
        mode1(|v| v["videoFileCfg"]["svrPath"] = json!(format!("/{}", "d".repeat(256))))
            .unwrap_err(),
        "videoFileCfg.svrPath: a name in the path is 256 bytes long; file systems allow 255"
    );
}

#[test]
fn hls_names_ffmpeg_cannot_write_are_refused() {
    assert_eq!(
        err_with(|v| v["videoFileCfg"]["svrPathName"] = json!("/live/a%d.m3u8")),
        "videoFileCfg.svrPathName: \"/live/a%d.m3u8\": an HLS playlist's name must not contain \
         '%' (FFmpeg reads it as a pattern in the names of the segments)"
    );
    // '%' in an mp4's name is an ordinary character
    let mut v = base();
    v["videoFileCfg"]["svrPathName"] = json!("/rec/100%.mp4");
    MixerConfig::from_value(v).unwrap();
    for svr in [
        "/live/a.m3u8;/live/a_init.mp4",
        "/live/a_init.mp4;live/a.m3u8",
    ] {
        assert_eq!(
            err_with(|v| v["videoFileCfg"]["svrPathName"] = json!(svr)),
            "videoFileCfg.svrPathName: \"live/a_init.mp4\" is named twice: the HLS playlist \
             \"live/a.m3u8\" writes it next to itself (each file is written once)",
            "{svr}"
        );
    }
    let p = Path::new("live/a.m3u8");
    assert!(hls_writes(p, Path::new("live/a_00012.m4s")));
    assert!(!hls_writes(p, Path::new("live/a_0001.m4s")));
    assert!(!hls_writes(p, Path::new("other/a_init.mp4")));
    assert!(!hls_writes(p, Path::new("live/ab_init.mp4")));
    // other stems, folders or plain files stay fine
    for svr in [
        "/live/a.m3u8;/live/b_init.mp4",
        "/live/a.m3u8;/vod/a_init.mp4",
        "/live/a.m3u8;/live/a.mp4",
    ] {
        let mut v = base();
        v["videoFileCfg"]["svrPathName"] = json!(svr);
        MixerConfig::from_value(v).unwrap_or_else(|e| panic!("{svr}: {e}"));
    }
}

#[test]
fn file_names_leave_room_for_what_the_recorder_adds() {
    let ok = format!("/d/{}.mp4", "a".repeat(219));
    assert!(confine(&ok).is_ok());
    // 224 bytes: `_1`, `_0001` or `.upload.json` would push it over the 255 of a file system
    let long = format!("/d/{}.mp4", "a".repeat(220));
    let e = confine(&long).unwrap_err();
    assert!(e.contains("224 bytes") && e.contains("at most 223"), "{e}");
    let cfg = format!(
        r#"{{"mode":0,"videoFileCfg":{{"svrPathName":"{long}","vWidth":320,"vHeight":240,
        "layoutConfig":[]}}}}"#
    );
    let e = MixerConfig::from_json(&cfg).unwrap_err();
    assert!(e.to_string().contains("svrPathName"), "{e}");
}
