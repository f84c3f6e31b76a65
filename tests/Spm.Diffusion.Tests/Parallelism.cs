// Fixtures run two at a time (one per core of the project's 2-core machine): much of this suite's time is spent in
// single-threaded work (loading and rewriting ONNX graphs, session set-up, file I/O), so a second worker uses the
// second core. Fixtures that must run alone (CPU accounting per case) say [NonParallelizable] with their reason.
[assembly: Parallelizable(ParallelScope.Fixtures)]
[assembly: LevelOfParallelism(2)]
