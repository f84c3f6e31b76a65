#:project ../../src/Spm.Diffusion/Spm.Diffusion.csproj
// Converts a UNet folder to fp16 (model.onnx + model.onnx_data): scripts/measure/fp16-unet-memory.sh.
using Spm.Diffusion.Onnx;
using Spm.Diffusion.Onnx.Fp16;
var m = OnnxModel.Load(args[0]);
var half = OnnxModel.FromProto(Fp16Converter.ToFp16(m), m.BaseDirectory, m.FilePath);
Directory.CreateDirectory(args[1]);
half.Save(Path.Combine(args[1], "model.onnx"), new OnnxSaveOptions(ExternalizeAboveBytes: 1024, NewDataFileName: "model.onnx_data", Overwrite: true));
Console.WriteLine($"fp16 weights {half.DescribeInitializers().Where(i=>i.DataType==10).Sum(i=>i.ByteLength)} bytes");
