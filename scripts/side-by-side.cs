#!/usr/bin/env -S dotnet run
// Puts PNG images side by side on a grey strip, each scaled up by whole pixels (nearest neighbour, so the model's
// own 64x64 pixels stay visible), for the README's base-versus-erased picture:
//   dotnet run scripts/side-by-side.cs -- SCALE OUT.png IN1.png IN2.png ...
#:package SixLabors.ImageSharp
#:property TreatWarningsAsErrors=true
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

if (args.Length < 3 || !int.TryParse(args[0], out var scale) || scale is < 1 or > 16)
{
    Console.Error.WriteLine("usage: dotnet run scripts/side-by-side.cs -- SCALE(1..16) OUT.png IN1.png IN2.png ...");
    return 2;
}
const int gap = 8;
var inputs = args[2..].Select(Image.Load<Rgb24>).ToList();
foreach (var image in inputs) image.Mutate(x => x.Resize(image.Width * scale, image.Height * scale, KnownResamplers.NearestNeighbor));
int width = inputs.Sum(i => i.Width) + gap * (inputs.Count + 1), height = inputs.Max(i => i.Height) + 2 * gap;
using var strip = new Image<Rgb24>(width, height, new Rgb24(200, 200, 200));
int left = gap;
foreach (var image in inputs)
{
    var at = new Point(left, gap);
    strip.Mutate(x => x.DrawImage(image, at, 1f));
    left += image.Width + gap;
    image.Dispose();
}
strip.SaveAsPng(args[1], new SixLabors.ImageSharp.Formats.Png.PngEncoder { CompressionLevel = SixLabors.ImageSharp.Formats.Png.PngCompressionLevel.BestCompression });
Console.WriteLine($"wrote {args[1]} ({width}x{height})");
return 0;
