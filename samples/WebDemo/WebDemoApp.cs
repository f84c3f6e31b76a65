using System.Net;
using System.Reflection;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;
using Spm.Core;
using Spm.Diffusion.Pipelines;

namespace Spm.Samples.WebDemo;

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
/// <param name="SizeMultiple">Image sides must be a multiple of this (the VAE factor times 2 per UNet down-sampling level).</param>
public sealed record InfoAnswer(string Model, IReadOnlyList<SpmInfo> Spms, int Steps, int Size, string Provider, int SizeMultiple);

/// <summary>
/// The web app: Kestrel on 127.0.0.1 only, the embedded page at <c>/</c>, a small JSON API (<c>GET /api/info</c>,
/// <c>POST /api/gates</c>, <c>POST /api/generate</c>) and its OpenAPI document at <c>/openapi/v1.json</c>. A refused
/// request is answered with an RFC 9457 problem (<c>application/problem+json</c>): status 400 with <c>errors</c> naming
/// each wrong field of the body (<c>body</c> for the body as a whole), 415 for a body that is not JSON; each refusal
/// is also logged (category <c>Spm.WebDemo.Api</c>, level Warning).
/// </summary>
public static class WebDemoApp
{
    private static readonly Dictionary<string, (string File, string ContentType)> Pages = new(StringComparer.Ordinal)
    {
        ["/"] = ("index.html", "text/html; charset=utf-8"),
        ["/app.js"] = ("app.js", "text/javascript; charset=utf-8"),
        ["/app.css"] = ("app.css", "text/css; charset=utf-8"),
    };

    /// <summary>The logging category of the API's refusals.</summary>
    public const string LogCategory = "Spm.WebDemo.Api";

    /// <summary>Path of the OpenAPI document the app serves.</summary>
    public const string OpenApiPath = "/openapi/v1.json";

    /// <summary>Loads the engine (model and SPMs) and builds the app; start it with <c>StartAsync</c> or <c>RunAsync</c>.</summary>
    /// <param name="options">Model, SPMs, port and defaults.</param>
    /// <param name="configure">Optional last word on the builder before the app is built (tests add a log sink here).</param>
    /// <exception cref="SpmException">The model or an SPM cannot be loaded.</exception>
    public static WebApplication Build(WebDemoOptions options, Action<WebApplicationBuilder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var engine = DemoEngine.Load(options);
        try
        {
            return Build(options, engine, configure);
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

    private static WebApplication Build(WebDemoOptions options, DemoEngine engine, Action<WebApplicationBuilder>? configure)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        // Loopback only: the demo has no authentication and generation is expensive.
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, options.Port));
        if (options.Quiet) builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton(_ => engine); // created by a factory, so the container disposes it with the app
        builder.Services.AddProblemDetails();
        builder.Services.AddOpenApi(o =>
        {
            o.AddDocumentTransformer((document, _, _) =>
            {
                document.Info.Title = "Spm WebDemo API";
                document.Info.Description = "Gates and base-versus-erased images of the loaded SPMs. Refused requests are " +
                    "RFC 9457 problems (application/problem+json) whose 'errors' name the body's fields.";
                return Task.CompletedTask;
            });
            o.AddSchemaTransformer(DescribeSpmSelection);
        });
        configure?.Invoke(builder);
        var app = builder.Build();
        _ = app.Services.GetRequiredService<DemoEngine>();
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(LogCategory);

        app.Use(async (context, next) =>
        {
            context.Response.Headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:";
            context.Response.Headers["X-Content-Type-Options"] = "nosniff";
            try
            {
                await next(context);
            }
            catch (ApiRequestException ex) when (!context.Response.HasStarted)
            {
                await Refuse(context, log, ex.StatusCode, ex.Errors);
            }
            catch (SpmException ex) when (!context.Response.HasStarted)
            {
                // Checks below the API (engine, pipeline) that the body reader does not repeat.
                await Refuse(context, log, StatusCodes.Status400BadRequest, FieldOf(context, ex));
            }
        });

        // Routing answers a POST whose body is declared as anything but JSON with an empty 415 (the endpoints' Accepts
        // metadata); give it the same problem body and log line as any other refusal. Other bodiless errors (404,
        // 405) get a plain problem.
        app.UseStatusCodePages(async pages =>
        {
            var http = pages.HttpContext;
            if (http.Response.StatusCode == StatusCodes.Status415UnsupportedMediaType)
                await Refuse(http, log, StatusCodes.Status415UnsupportedMediaType, new Dictionary<string, string[]>
                {
                    ["body"] = [$"the request body must be sent as application/json, got '{http.Request.ContentType}'."],
                });
            else
                await Results.Problem(statusCode: http.Response.StatusCode).ExecuteAsync(http);
        });

        foreach (var (path, (file, type)) in Pages)
        {
            var bytes = ReadPage(file);
            app.MapGet(path, () => Results.Bytes(bytes, type)).ExcludeFromDescription();
        }
        app.MapOpenApi(OpenApiPath);

        app.MapGet("/api/info", (DemoEngine e) =>
                TypedResults.Ok(new InfoAnswer(e.ModelName, e.Spms, e.Options.Steps, e.DefaultSize, e.Pipeline.Provider.ToString(),
                    e.Pipeline.Folder.ImageSizeMultiple)))
            .WithName("info")
            .WithSummary("What is loaded: the model, the SPMs in the order 'enabled' flags follow, the page's defaults.");

        app.MapPost("/api/gates", async (HttpContext http, DemoEngine e) =>
            {
                var (body, enabled) = ApiRequestReader.ReadGates(await ReadBodyAsync(http), e.Spms);
                return TypedResults.Ok(e.Gates(body.Prompt, enabled));
            })
            .WithName("gates")
            .WithSummary("Each SPM's gate for a prompt (facilitated transport), and what it applies given 'enabled'.")
            .Accepts<GatesBody>("application/json")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType);

        app.MapPost("/api/generate", async (HttpContext http, DemoEngine e) =>
            {
                var (body, enabled) = ApiRequestReader.ReadGenerate(await ReadBodyAsync(http), e.Spms);
                // The model's own constraint on the side (its message starts with the word passed in, "size").
                if (body.Size is { } side && e.Pipeline.Folder.DescribeInvalidImageSide("size", side) is { } problem)
                    throw new ApiRequestException("size", problem["size ".Length..]);
                var request = new DemoRequest(body.Prompt, enabled, body.Seed ?? 1, body.Steps ?? e.Options.Steps,
                    body.Size, body.NegativePrompt ?? "", body.Guidance ?? e.DefaultGuidance);
                var images = await e.GenerateAsync(request, http.RequestAborted);
                return TypedResults.Ok(new GenerateAnswer(DataUrl(images.BasePng), DataUrl(images.ErasedPng), images.Width, images.Height,
                    images.Gates, images.Parameters, Math.Round(images.Elapsed.TotalSeconds, 3)));
            })
            .WithName("generate")
            .WithSummary("The base image (every SPM off) and the erased image (enabled SPMs, gated) from the same seed, as PNG data URLs.")
            .Accepts<GenerateBody>("application/json")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType);
        return app;
    }

    // The body as bytes, refused when it is too large or not declared as JSON. Routing refuses other declared types
    // (415); a body with no content type at all is refused here. Requiring application/json keeps other web sites'
    // pages from posting here: a cross-origin JSON post needs a CORS preflight, which this app never grants, while a
    // post without a content type needs none. An empty body is left to the reader, which names it.
    private static async Task<byte[]> ReadBodyAsync(HttpContext http)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await http.Request.Body.ReadAsync(chunk, http.RequestAborted)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > ApiRequestReader.MaxBodyBytes)
                throw new ApiRequestException("body", $"the request body is larger than {ApiRequestReader.MaxBodyBytes} bytes.");
        }
        if (buffer.Length > 0 && !http.Request.HasJsonContentType())
            throw new ApiRequestException("body", $"the request body must be sent as application/json, got '{http.Request.ContentType ?? "no content type"}'.")
            {
                StatusCode = StatusCodes.Status415UnsupportedMediaType,
            };
        return buffer.ToArray();
    }

    private static async Task Refuse(HttpContext context, ILogger log, int status, IReadOnlyDictionary<string, string[]> errors)
    {
        var detail = string.Join(" ", errors.SelectMany(e => e.Value.Select(m => $"{e.Key}: {m}")));
        log.LogWarning("{Method} {Path} refused ({Status}): {Detail}", context.Request.Method, context.Request.Path, status, detail);
        var result = status == StatusCodes.Status400BadRequest
            ? Results.ValidationProblem(errors.ToDictionary(e => e.Key, e => e.Value), detail: detail, title: "The request is invalid.")
            : Results.Problem(detail: detail, statusCode: status, title: "The request body must be JSON.",
                extensions: new Dictionary<string, object?> { ["errors"] = errors });
        await result.ExecuteAsync(context);
    }

    // The field a check below the endpoint is about. The endpoint already checks every field of a generate request,
    // the image side against the model included, so a refusal of the pipeline's own request check
    // (InvalidGenerationRequestException) about the width or height (which the API's size sets both) is still named
    // 'size'; anything else is reported against the body as a whole.
    private static Dictionary<string, string[]> FieldOf(HttpContext context, SpmException ex)
    {
        bool size = ex is InvalidGenerationRequestException && context.Request.Path == "/api/generate"
            && (ex.Message.StartsWith("width", StringComparison.Ordinal) || ex.Message.StartsWith("height", StringComparison.Ordinal));
        return new() { [size ? "size" : "body"] = [ex.Message] };
    }

    // Adds what the generated schema of SpmSelection cannot say by itself: in JSON it is one of two kinds of array.
    private static Task DescribeSpmSelection(OpenApiSchema schema, OpenApiSchemaTransformerContext context, CancellationToken _)
    {
        if (context.JsonTypeInfo.Type != typeof(SpmSelection)) return Task.CompletedTask;
        schema.Type = JsonSchemaType.Array;
        schema.Properties?.Clear();
        schema.Required?.Clear();
        schema.Description = "The SPMs switched on: one boolean per loaded SPM in GET /api/info order, or the names of " +
            "the SPMs to switch on (as /api/info lists them, with or without '.safetensors'); [] switches every SPM off.";
        schema.OneOf =
        [
            new OpenApiSchema { Type = JsonSchemaType.Array, Items = new OpenApiSchema { Type = JsonSchemaType.Boolean } },
            new OpenApiSchema { Type = JsonSchemaType.Array, Items = new OpenApiSchema { Type = JsonSchemaType.String } },
        ];
        return Task.CompletedTask;
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
