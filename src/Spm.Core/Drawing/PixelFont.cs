namespace Spm.Core.Drawing;

/// <summary>
/// A small bitmap font for drawing text into raster images without a font library: printable ASCII, each glyph
/// 5 pixels wide and 8 rows tall (rows 0..6 above and on the baseline, row 7 for descenders), advanced by 6 pixels.
/// Characters outside printable ASCII are drawn as a hollow box, so a label with them still shows its length.
/// </summary>
public static class PixelFont
{
    /// <summary>Glyph width in font pixels.</summary>
    public const int GlyphWidth = 5;

    /// <summary>Glyph height in font pixels (including the descender row).</summary>
    public const int GlyphHeight = 8;

    /// <summary>The row the baseline runs under (the last row of a capital letter).</summary>
    public const int BaselineRow = 6;

    /// <summary>Horizontal distance from one glyph's left edge to the next one's, in font pixels.</summary>
    public const int Advance = 6;

    // One glyph a line: the character, a space, then its rows top to bottom ('#' = ink); rows left out are blank.
    // Written for this project: capitals and digits fill rows 0..6, lowercase has its x-height at rows 2..6 and
    // g, j, p, q, y reach into row 7.
    private const string Glyphs = """
          ..... ..... ..... ..... ..... ..... .....
        ! ..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..
        " .#.#. .#.#.
        # .#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.
        $ ..#.. .#### #.#.. .###. ..#.# ####. ..#..
        % ##... ##..# ...#. ..#.. .#... #..## ...##
        & .##.. #..#. #.#.. .#... #.#.# #..#. .##.#
        ' ..#.. ..#..
        ( ...#. ..#.. .#... .#... .#... ..#.. ...#.
        ) .#... ..#.. ...#. ...#. ...#. ..#.. .#...
        * ..... ..#.. #.#.# .###. #.#.# ..#..
        + ..... ..#.. ..#.. ##### ..#.. ..#..
        , ..... ..... ..... ..... ..... .##.. ..#.. .#...
        - ..... ..... ..... #####
        . ..... ..... ..... ..... ..... .##.. .##..
        / ..... ....# ...#. ..#.. .#... #....
        0 .###. #...# #..## #.#.# ##..# #...# .###.
        1 ..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.
        2 .###. #...# ....# ...#. ..#.. .#... #####
        3 ##### ...#. ..#.. ...#. ....# #...# .###.
        4 ...#. ..##. .#.#. #..#. ##### ...#. ...#.
        5 ##### #.... ####. ....# ....# #...# .###.
        6 ..##. .#... #.... ####. #...# #...# .###.
        7 ##### ....# ...#. ..#.. .#... .#... .#...
        8 .###. #...# #...# .###. #...# #...# .###.
        9 .###. #...# #...# .#### ....# ...#. .##..
        : ..... .##.. .##.. ..... .##.. .##..
        ; ..... .##.. .##.. ..... .##.. ..#.. .#...
        < ...#. ..#.. .#... #.... .#... ..#.. ...#.
        = ..... ..... ##### ..... #####
        > .#... ..#.. ...#. ....# ...#. ..#.. .#...
        ? .###. #...# ....# ...#. ..#.. ..... ..#..
        @ .###. #...# ....# .##.# #.#.# #.#.# .###.
        A .###. #...# #...# ##### #...# #...# #...#
        B ####. #...# #...# ####. #...# #...# ####.
        C .###. #...# #.... #.... #.... #...# .###.
        D ###.. #..#. #...# #...# #...# #..#. ###..
        E ##### #.... #.... ####. #.... #.... #####
        F ##### #.... #.... ####. #.... #.... #....
        G .###. #...# #.... #.### #...# #...# .####
        H #...# #...# #...# ##### #...# #...# #...#
        I .###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
        J ..### ...#. ...#. ...#. ...#. #..#. .##..
        K #...# #..#. #.#.. ##... #.#.. #..#. #...#
        L #.... #.... #.... #.... #.... #.... #####
        M #...# ##.## #.#.# #.#.# #...# #...# #...#
        N #...# #...# ##..# #.#.# #..## #...# #...#
        O .###. #...# #...# #...# #...# #...# .###.
        P ####. #...# #...# ####. #.... #.... #....
        Q .###. #...# #...# #...# #.#.# #..#. .##.#
        R ####. #...# #...# ####. #.#.. #..#. #...#
        S .#### #.... #.... .###. ....# ....# ####.
        T ##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
        U #...# #...# #...# #...# #...# #...# .###.
        V #...# #...# #...# #...# #...# .#.#. ..#..
        W #...# #...# #...# #.#.# #.#.# #.#.# .#.#.
        X #...# #...# .#.#. ..#.. .#.#. #...# #...#
        Y #...# #...# .#.#. ..#.. ..#.. ..#.. ..#..
        Z ##### ....# ...#. ..#.. .#... #.... #####
        [ .###. .#... .#... .#... .#... .#... .###.
        \ ..... #.... .#... ..#.. ...#. ....#
        ] .###. ...#. ...#. ...#. ...#. ...#. .###.
        ^ ..#.. .#.#. #...#
        _ ..... ..... ..... ..... ..... ..... ..... #####
        ` .#... ..#..
        a ..... ..... .###. ....# .#### #...# .####
        b #.... #.... #.##. ##..# #...# #...# ####.
        c ..... ..... .###. #.... #.... #...# .###.
        d ....# ....# .##.# #..## #...# #...# .####
        e ..... ..... .###. #...# ##### #.... .###.
        f ..##. .#..# .#... ###.. .#... .#... .#...
        g ..... ..... .#### #...# #...# .#### ....# .###.
        h #.... #.... #.##. ##..# #...# #...# #...#
        i ..#.. ..... .##.. ..#.. ..#.. ..#.. .###.
        j ...#. ..... ..##. ...#. ...#. ...#. #..#. .##..
        k #.... #.... #..#. #.#.. ##... #.#.. #..#.
        l .##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
        m ..... ..... ##.#. #.#.# #.#.# #...# #...#
        n ..... ..... #.##. ##..# #...# #...# #...#
        o ..... ..... .###. #...# #...# #...# .###.
        p ..... ..... ####. #...# #...# ####. #.... #....
        q ..... ..... .#### #...# #...# .#### ....# ....#
        r ..... ..... #.##. ##..# #.... #.... #....
        s ..... ..... .###. #.... .###. ....# ####.
        t .#... .#... ###.. .#... .#... .#..# ..##.
        u ..... ..... #...# #...# #...# #..## .##.#
        v ..... ..... #...# #...# #...# .#.#. ..#..
        w ..... ..... #...# #...# #.#.# #.#.# .#.#.
        x ..... ..... #...# .#.#. ..#.. .#.#. #...#
        y ..... ..... #...# #...# #...# .#### ....# .###.
        z ..... ..... ##### ...#. ..#.. .#... #####
        { ...#. ..#.. ..#.. .#... ..#.. ..#.. ...#.
        | ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
        } .#... ..#.. ..#.. ...#. ..#.. ..#.. .#...
        ~ ..... ..... .#... #.#.# ...#.
        """;

    // Rows as 5-bit masks (bit 4 = leftmost column), indexed by character code - 32.
    private static readonly byte[][] Table = Parse();

    private static readonly byte[] Missing = [0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111, 0];

    /// <summary>The glyph of <paramref name="c"/>: <see cref="GlyphHeight"/> rows, each a 5-bit mask with bit 4 the leftmost column.</summary>
    public static ReadOnlySpan<byte> Glyph(char c) => c is >= ' ' and <= '~' ? Table[c - ' '] : Missing;

    /// <summary>True when pixel (<paramref name="column"/>, <paramref name="row"/>) of <paramref name="c"/>'s glyph is ink.</summary>
    public static bool IsInk(char c, int column, int row) =>
        (uint)column < GlyphWidth && (uint)row < GlyphHeight && (Glyph(c)[row] & (1 << (GlyphWidth - 1 - column))) != 0;

    /// <summary>The width of <paramref name="text"/> in font pixels (no trailing gap after the last glyph).</summary>
    public static int Width(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Length == 0 ? 0 : text.Length * Advance - (Advance - GlyphWidth);
    }

    private static byte[][] Parse()
    {
        var table = new byte[95][];
        foreach (var line in Glyphs.Split('\n'))
        {
            if (line.Length < 2) continue;
            char c = line[0];
            var rows = line[2..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (c < ' ' || c > '~' || rows.Length > GlyphHeight || table[c - ' '] is not null)
                throw new InvalidOperationException($"Bad glyph line for '{c}'.");
            var glyph = new byte[GlyphHeight];
            for (int r = 0; r < rows.Length; r++)
            {
                if (rows[r].Length != GlyphWidth) throw new InvalidOperationException($"Glyph '{c}' row {r} is not {GlyphWidth} wide.");
                for (int x = 0; x < GlyphWidth; x++)
                    if (rows[r][x] == '#') glyph[r] |= (byte)(1 << (GlyphWidth - 1 - x));
            }
            table[c - ' '] = glyph;
        }
        for (int i = 0; i < table.Length; i++)
            if (table[i] is null) throw new InvalidOperationException($"No glyph for '{(char)(i + ' ')}'.");
        return table;
    }
}
