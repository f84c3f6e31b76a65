using System.Net;
using System.Reflection;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Spm.Core;

namespace Spm.Samples.WebDemo;

/// <summary>Body of <c>POST /api/gates</c>.</summary>
/// <param name="Prompt">The prompt.</param>
/// <param name="Enabled">One flag per loaded SPM.</param>
public sealed record GatesBody(string? Prompt, bool[]? Enabled);

/// <summary>Body of <c>POST /api/generate</c>; omitted values take the page's defaults.</summary>
/// <param name="Prompt">The prompt.</param>
/// <param name="Enabled">One flag per loaded SPM.</param>
/// <param name="Seed">Noise seed (default 1).</param>
/// <param name="Steps">Denoising steps (default: the server's <c>--steps</c>).</param>
/// <param name="Size">Image side (default: <c>--size</c> or the model's).</param>
/// <param name="NegativePrompt">Negative prompt.</param>
/// <param name="Guidance">Guidance scale (default: the model's spm_generate_defaults.json, else 7.5).</param>
public sealed record GenerateBody(string? Prompt, bool[]? Enabled, ulong? Seed, int? Steps, int? Size, string? NegativePrompt, double? Guidance);

/// <summary>Answer of <c>POST /api/generate</c>: both images as PNG data URLs.</summary>
/// <param name="Base">The base image (every SPM off).</param>
/// <param name="Erased">The erased image (enabled SPMs, gated).</param>
/// <param name="Width">Image width.</param>
/// <param name="Height">Image height.</param>
/// <param name="Gates">Each SPM's gate.</param>
/// <param name="Parameters">The erased image's parameters text.</param>
/// <param name="Seconds">Generation time of both images.</param>
public sealed record GenerateAnswer(string Base, string Erased, int Width, int Height, IReadOnlyList<GateView> Gates, string Parameters, double Seconds);

/// <summary>Answer of <c>GET /api/info</c>: what is loaded and the page's defaults.</summary>
/// <param name="Model">Model folder name.</param>
/// <param name="Spms">The loaded SPMs.</param>
/// <param name="Steps">Default steps.</param>
/// <param name="Size">Default image side.</param>
/// <param name="Provider">Execution provider in use.</param>
public sealed record InfoAnswer(string Model, IReadOnlyList<SpmInfo> Spms, int Steps, int Size, string Provider);

/// <summary>
/// The web app: Kestrel on 127.0.0.1 only, the embedded page at <c>/</c>, and a small JSON API
/// (<c>GET /api/info</c>, <c>POST /api/gates</c>, <c>POST /api/generate</c>). Errors in a request are 400 with
/// <c>{"error": "..."}</c>.
/// </summary>
public static class WebDemoApp
{
    private static readonly Dictionary<string, (string File, string ContentType)> Pages = new(StringComparer.Ordinal)
    {
        ["/"] = ("index.html", "text/html; charset=utf-8"),
        ["/app.js"] = ("app.js", "text/javascript; charset=utf-8"),
        ["/app.css"] = ("app.css", "text/css; charset=utf-8"),
    };

    /// <summary>Loads the engine (model and SPMs) and builds the app; start it with <c>StartAsync</c> or <c>RunAsync</c>.</summary>
    /// <exception cref="SpmException">The model or an SPM cannot be loaded.</exception>
    public static WebApplication Build(WebDemoOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var engine = DemoEngine.Load(options);
        try
        {
            return Build(options, engine);
        }
        catch
        {
            engine.Dispose();
            throw;
        }
    }

    /// <summary>The address the started app listens on (<c>http://127.0.0.1:PORT/</c>, the real port when 0 was asked).</summary>
    public static Uri Address(WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var feature = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>();
        var first = feature?.Addresses.FirstOrDefault() ?? throw new InvalidOperationException("The app is not started.");
        return new Uri(first.EndsWith('/') ? first : first + "/");
    }

    private static WebApplication Build(WebDemoOptions options, DemoEngine engine)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        // Loopback only: the demo has no authentication and generation is expensive.
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, options.Port));
        if (options.Quiet) builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton(_ => engine); // created by a factory, so the container disposes it with the app
        var app = builder.Build();
        _ = app.Services.GetRequiredService<DemoEngine>();

        app.Use(async (context, next) =>
        {
            context.Response.Headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:";
            context.Response.Headers["X-Content-Type-Options"] = "nosniff";
            try
            {
                await next(context);
            }
            catch (SpmException ex) when (!context.Response.HasStarted)
            {
                context.Response.StatusCode = StatusCodes.Status400BadRequest;
                await context.Response.WriteAsJsonAsync(new { error = ex.Message });
            }
        });

        foreach (var (path, (file, type)) in Pages)
        {
            var bytes = ReadPage(file);
            app.MapGet(path, () => Results.Bytes(bytes, type));
        }

        app.MapGet("/api/info", (DemoEngine e) => new InfoAnswer(e.ModelName, e.Spms, e.Options.Steps, e.DefaultSize, e.Pipeline.Provider.ToString()));

        app.MapPost("/api/gates", (GatesBody body, DemoEngine e) => e.Gates(body.Prompt ?? "", body.Enabled ?? []));

        app.MapPost("/api/generate", async (GenerateBody body, DemoEngine e, HttpContext http) =>
        {
            var request = new DemoRequest(body.Prompt ?? "", body.Enabled ?? [], body.Seed ?? 1, body.Steps ?? e.Options.Steps,
                body.Size, body.NegativePrompt ?? "", body.Guidance ?? e.DefaultGuidance);
            var images = await e.GenerateAsync(request, http.RequestAborted);
            return new GenerateAnswer(DataUrl(images.BasePng), DataUrl(images.ErasedPng), images.Width, images.Height,
                images.Gates, images.Parameters, Math.Round(images.Elapsed.TotalSeconds, 3));
        });
        return app;
    }

    private static string DataUrl(byte[] png) => "data:image/png;base64," + Convert.ToBase64String(png);

    private static byte[] ReadPage(string file)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("page/" + file)
            ?? throw new InvalidOperationException($"The page resource '{file}' is missing from the assembly.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
