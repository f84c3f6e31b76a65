using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;
using Spm.Core.Randomness;

namespace Spm.Core.Atlas;

/// <summary><c>y = M x</c> for a symmetric n × n matrix M that is never formed (a sparse graph operator).</summary>
public delegate void SymmetricOperator(ReadOnlySpan<double> x, Span<double> y);

/// <summary>Eigenvalues in decreasing order and their unit eigenvectors (vectors[j] belongs to values[j]).</summary>
/// <param name="Values">The eigenvalues, largest first.</param>
/// <param name="Vectors">One array of length n per eigenvalue.</param>
/// <param name="MatrixVectorProducts">How many times the operator was applied (the cost of the solve).</param>
public sealed record EigenPairs(double[] Values, double[][] Vectors, int MatrixVectorProducts);

/// <summary>
/// The few algebraically largest eigenpairs of a large sparse symmetric matrix: Lanczos with full
/// reorthogonalization, growing the Krylov basis until every wanted Ritz pair has a small residual. MathNet's dense
/// symmetric eigen-decomposition is O(n³) (minutes at n = 10,000); here the cost is m matrix-vector products on the
/// sparse operator plus O(n m²) for the reorthogonalization, with m a few times the number of wanted pairs. Small
/// matrices (n ≤ <see cref="DenseLimit"/>) are formed and solved densely by MathNet.
/// </summary>
public static class SymmetricEigensolver
{
    /// <summary>Largest n solved by forming the matrix and a dense decomposition.</summary>
    public const int DenseLimit = 400;

    /// <summary>
    /// The <paramref name="count"/> algebraically largest eigenpairs of the operator.
    /// </summary>
    /// <param name="n">The matrix size.</param>
    /// <param name="count">How many pairs (1..n).</param>
    /// <param name="op">The matrix-vector product.</param>
    /// <param name="seed">Seed of the Lanczos start vector (results are deterministic for a seed).</param>
    /// <param name="tolerance">Residual ‖M v − θ v‖ accepted, relative to the largest |eigenvalue| found.</param>
    /// <param name="cancellationToken">Checked between Lanczos steps.</param>
    public static EigenPairs Largest(int n, int count, SymmetricOperator op, ulong seed = 0, double tolerance = 1e-8, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(op);
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        if (count < 1 || count > n) throw new ArgumentOutOfRangeException(nameof(count), $"count must be in 1..{n}, got {count}.");
        return n <= DenseLimit ? Dense(n, count, op) : Lanczos(n, count, op, seed, tolerance, cancellationToken);
    }

    private static EigenPairs Dense(int n, int count, SymmetricOperator op)
    {
        var m = Matrix<double>.Build.Dense(n, n);
        var e = new double[n];
        var col = new double[n];
        for (int j = 0; j < n; j++)
        {
            e[j] = 1;
            op(e, col);
            e[j] = 0;
            for (int i = 0; i < n; i++) m[i, j] = col[i];
        }
        // Symmetrize against rounding in the operator so MathNet takes its symmetric (real-eigenvalue) path.
        var sym = (m + m.Transpose()) * 0.5;
        var evd = sym.Evd(MathNet.Numerics.LinearAlgebra.Symmetricity.Symmetric);
        var order = Enumerable.Range(0, n).OrderByDescending(i => evd.EigenValues[i].Real).Take(count).ToArray();
        return new EigenPairs(
            order.Select(i => evd.EigenValues[i].Real).ToArray(),
            order.Select(i => evd.EigenVectors.Column(i).ToArray()).ToArray(),
            n);
    }

    private static EigenPairs Lanczos(int n, int count, SymmetricOperator op, ulong seed, double tolerance, CancellationToken ct)
    {
        var rng = new SeededRandom(seed);
        var basis = new List<double[]>();
        var alpha = new List<double>();
        var beta = new List<double>(); // beta[j] couples basis j and j+1
        var v = RandomUnit(n, rng, basis);
        var w = new double[n];
        int firstCheck = Math.Min(n, Math.Max(2 * count + 20, 40));
        int products = 0;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            basis.Add(v);
            op(v, w);
            products++;
            int j = basis.Count - 1;
            if (j > 0) TensorPrimitives.MultiplyAdd(basis[j - 1], -beta[j - 1], w, w);
            double a = TensorPrimitives.Dot<double>(w, v);
            alpha.Add(a);
            TensorPrimitives.MultiplyAdd(v, -a, w, w);
            // Full reorthogonalization, twice ("twice is enough"): without it the basis loses orthogonality as Ritz
            // values converge and copies of the same eigenvalue appear.
            for (int pass = 0; pass < 2; pass++)
                foreach (var q in basis)
                    TensorPrimitives.MultiplyAdd(q, -TensorPrimitives.Dot<double>(w, q), w, w);
            double b = TensorPrimitives.Norm<double>(w);
            int m = basis.Count;
            bool full = m == n;
            if (full || (m >= firstCheck && (m - firstCheck) % 10 == 0) || b < 1e-12)
            {
                var (values, vectors, converged) = Ritz(n, count, basis, alpha, beta, b, tolerance);
                if (converged || full) return new EigenPairs(values, vectors, products);
            }
            beta.Add(b);
            if (b < 1e-12)
            {
                // An invariant subspace is exhausted (the start vector had no component elsewhere): restart from a
                // fresh random direction orthogonal to the basis; the tridiagonal matrix becomes block diagonal.
                beta[^1] = 0;
                v = RandomUnit(n, rng, basis);
            }
            else
            {
                v = new double[n];
                TensorPrimitives.Multiply(w, 1 / b, v);
            }
        }
    }

    private static (double[] Values, double[][] Vectors, bool Converged) Ritz(int n, int count, List<double[]> basis,
        List<double> alpha, List<double> beta, double lastBeta, double tolerance)
    {
        int m = basis.Count;
        var t = Matrix<double>.Build.Dense(m, m);
        for (int i = 0; i < m; i++)
        {
            t[i, i] = alpha[i];
            if (i + 1 < m) { t[i, i + 1] = beta[i]; t[i + 1, i] = beta[i]; }
        }
        var evd = t.Evd(MathNet.Numerics.LinearAlgebra.Symmetricity.Symmetric);
        var order = Enumerable.Range(0, m).OrderByDescending(i => evd.EigenValues[i].Real).Take(Math.Min(count, m)).ToArray();
        double scale = Math.Max(1e-300, order.Max(i => Math.Abs(evd.EigenValues[i].Real)));
        bool converged = order.Length == count;
        foreach (int i in order)
            if (Math.Abs(lastBeta * evd.EigenVectors[m - 1, i]) > tolerance * scale) converged = false;
        if (!converged && m < n) return ([], [], false);
        var values = order.Select(i => evd.EigenValues[i].Real).ToArray();
        var vectors = new double[order.Length][];
        for (int r = 0; r < order.Length; r++)
        {
            var x = new double[n];
            for (int k = 0; k < m; k++) TensorPrimitives.MultiplyAdd(basis[k], evd.EigenVectors[k, order[r]], x, x);
            TensorPrimitives.Multiply(x, 1 / TensorPrimitives.Norm<double>(x), x);
            vectors[r] = x;
        }
        return (values, vectors, true);
    }

    private static double[] RandomUnit(int n, SeededRandom rng, List<double[]> against)
    {
        var v = new double[n];
        for (int i = 0; i < n; i++) v[i] = rng.NextGaussian();
        for (int pass = 0; pass < 2; pass++)
            foreach (var q in against) TensorPrimitives.MultiplyAdd(q, -TensorPrimitives.Dot<double>(v, q), v, v);
        TensorPrimitives.Multiply(v, 1 / TensorPrimitives.Norm<double>(v), v);
        return v;
    }
}
