#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    face_attendance::fuzzing::realtime_query(data);
});
