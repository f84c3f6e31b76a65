// Fixtures run two at a time (one per core of the project's 2-core machine): most of this suite's time is spent in
// single-threaded work (building gradient graphs, ONNX Runtime session set-up, trainers pinned to one intra-op thread),
// so a second worker uses the second core. Fixtures that must run alone say [NonParallelizable] with their reason.
[assembly: Parallelizable(ParallelScope.Fixtures)]
[assembly: LevelOfParallelism(2)]
