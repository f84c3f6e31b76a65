#:project ../../src/Spm.Diffusion/Spm.Diffusion.csproj
// Opens a UNet as the pipeline does and reports the peak working set: scripts/measure/fp16-unet-memory.sh.
using Spm.Diffusion.Runtime;
using Microsoft.ML.OnnxRuntime;
var level = Enum.Parse<GraphOptimizationLevel>(args[1]);
var sw = System.Diagnostics.Stopwatch.StartNew();
var created = OnnxSessionFactory.Create(OnnxModelSource.FromFile(args[0]), new OnnxRuntimeOptions { OptimizationLevel = level, IntraOpThreads = 2 });
var p = System.Diagnostics.Process.GetCurrentProcess();
Console.WriteLine($"session created in {sw.Elapsed.TotalSeconds:F1} s, level {level}; peak working set {p.PeakWorkingSet64 / 1e9:F3} GB");
if (args.Length > 2) {
  var s = created.Session;
  using var sample = OrtValue.CreateTensorValueFromMemory(new Float16[1*4*8*8], new long[]{1,4,8,8});
  using var t = OrtValue.CreateTensorValueFromMemory(new Float16[]{(Float16)500f}, new long[]{1});
  using var e = OrtValue.CreateTensorValueFromMemory(new Float16[1*77*768], new long[]{1,77,768});
  sw.Restart();
  using var o = s.Run(new RunOptions(), new[]{"sample","timestep","encoder_hidden_states"}, new[]{sample,t,e}, new[]{s.OutputNames[0]});
  p.Refresh();
  Console.WriteLine($"one 64x64 UNet call in {sw.Elapsed.TotalSeconds:F1} s; peak working set {p.PeakWorkingSet64 / 1e9:F3} GB");
}
