"""One neuron, o = sigmoid(w·x + b), fitted with mean squared error."""
from compiler.dsl import Input, Param, mse, sigmoid

x = Input("x", ("B", 3))
t = Input("t", ("B",))

w = Param("w", (3,), init="xavier_normal")
b = Param("b", (), init="zeros")

o = sigmoid(x @ w + b)
loss = mse(o, t)

outputs = {"o": o}
