// Fixtures run one at a time. They ran two at a time (one per core) and that was about 40 % faster, but ONNX Runtime's
// test host crashed natively in about one full run in four with two fixtures creating, running and releasing sessions
// side by side (seen with BakeTests and GraphComposerTests together, then again with other pairs); a suite that crashes
// now and then costs more than the minute saved. Fixtures that must run alone say [NonParallelizable] with their reason.
[assembly: LevelOfParallelism(1)]
