#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    face_attendance::fuzzing::gallery_envelope(data);
});
