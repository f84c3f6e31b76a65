using Microsoft.AspNetCore.Builder;
using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Spm.Samples.WebDemo;
using Spm.Tests.Common;

namespace Spm.WebDemo.Tests;

/// <summary>
/// One WebDemo app for the whole assembly: Kestrel on 127.0.0.1 with a free port, the tiny SD-1.x fixture and both
/// reference SPMs (all-layers rank 1 on 72 layers, attn2-rank4 on 24), two generations allowed at once.
/// </summary>
[SetUpFixture]
public sealed class DemoServer
{
    private static WebApplication? _app;

    /// <summary>The running app's address (http://127.0.0.1:PORT/).</summary>
    public static Uri Address { get; private set; } = null!;

    /// <summary>The app's engine (pipeline and SPMs), for computing what the page should show.</summary>
    public static DemoEngine Engine { get; private set; } = null!;

    /// <summary>Every line the app logged (category, level, message), in order.</summary>
    public static LogSink Log { get; } = new();

    /// <summary>The SPM files the app loaded, in order.</summary>
    public static string[] SpmFiles =>
    [
        Path.Combine(TestPaths.Reference("all-layers"), "spm.safetensors"),
        Path.Combine(TestPaths.Reference("attn2-rank4"), "spm.safetensors"),
    ];

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        var options = new WebDemoOptions(TestPaths.TinySd1, SpmFiles, Port: 0, Steps: 4, Size: 64, MaxConcurrentGenerations: 2, Quiet: true);
        _app = WebDemoApp.Build(options, b => b.Logging.AddProvider(Log));
        await _app.StartAsync();
        Address = WebDemoApp.Address(_app);
        Engine = _app.Services.GetRequiredService<DemoEngine>();
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        if (_app is null) return;
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    /// <summary>Decodes a <c>data:image/png;base64,</c> URL to RGB pixels.</summary>
    public static (int Width, int Height, byte[] Rgb) DecodeDataUrl(string url)
    {
        const string prefix = "data:image/png;base64,";
        Assert.That(url, Does.StartWith(prefix));
        using var image = Image.Load<Rgb24>(Convert.FromBase64String(url[prefix.Length..]));
        var rgb = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(rgb);
        return (image.Width, image.Height, rgb);
    }

    /// <summary>
    /// How two same-size RGB buffers differ: mean absolute difference (0..255 levels), largest difference, and the share
    /// of channel values that differ at all.
    /// </summary>
    public static (double Mean, int Max, double Changed) Diff(byte[] a, byte[] b)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length));
        long sum = 0;
        int max = 0, changed = 0;
        for (int i = 0; i < a.Length; i++)
        {
            int d = Math.Abs(a[i] - b[i]);
            sum += d;
            max = Math.Max(max, d);
            if (d != 0) changed++;
        }
        var result = ((double)sum / a.Length, max, (double)changed / a.Length);
        TestContext.Out.WriteLine($"image difference: mean {result.Item1:0.###} levels, max {max}, {result.Item3:P1} of values changed");
        return result;
    }
}

/// <summary>A logger provider that keeps every line in memory, for tests that check what the server logged.</summary>
public sealed class LogSink : ILoggerProvider
{
    private readonly ConcurrentQueue<(string Category, LogLevel Level, string Message)> _lines = new();

    /// <summary>The lines logged so far.</summary>
    public IReadOnlyList<(string Category, LogLevel Level, string Message)> Lines => _lines.ToArray();

    /// <inheritdoc />
    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

    /// <inheritdoc />
    public void Dispose() { }

    private sealed class Logger(string category, ConcurrentQueue<(string, LogLevel, string)> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue((category, logLevel, formatter(state, exception)));
    }
}
