#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    face_attendance::fuzzing::mjpeg_stream(data);
});
