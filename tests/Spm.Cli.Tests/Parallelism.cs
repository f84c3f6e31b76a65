// Fixtures run two at a time (one per core of the project's 2-core machine). The verbs write to a console of the test's
// own writers (CliHarness.Run), so capturing output needs no process-wide state; fixtures that do touch it (the static
// Console for the train and attack verbs, environment variables, the working directory) or spawn CPU-heavy processes
// say [NonParallelizable] with their reason.
[assembly: Parallelizable(ParallelScope.Fixtures)]
[assembly: LevelOfParallelism(2)]
